"""Helpers shared by remote backend plugins (s3, oss, registry, ...); no third-party imports.

- Config value checks that raise :class:`~nydus_core.errors.ConfigError` naming the key
  (:func:`get_str`, :func:`get_bool`, :func:`get_number`, :func:`get_url`, :func:`get_ca_cert_files`,
  :func:`warn_unknown_keys`).
- Upstream's Dragonfly ``proxy`` block (:class:`ProxySettings`, :func:`parse_proxy`) and its health
  state (:class:`ProxyRoute`): requests go through the proxy while it is healthy, fall back to the
  origin when it fails, and return after ``check_interval`` once ``ping_url`` answers.
- :func:`redact`: removes secrets and ``user:password@`` from text meant for users or logs;
  :class:`Redactor` also URL query strings and ``Authorization`` values, with secrets learnt as it goes.
- :func:`ca_bundle`: one PEM file from several ``ca_cert_files``.
- :func:`object_key`: the object name of a blob in an object store (``object_prefix + blob_id``).
- :class:`ExactSizeReader`: a stream wrapper that fails an upload whose stream is shorter or longer
  than the size the caller declared.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import BackendError, BlobNotFoundError, ConfigError

__all__ = [
    "RETRY_STATUSES",
    "ExactSizeReader",
    "ProxyRoute",
    "ProxySettings",
    "Redactor",
    "ca_bundle",
    "exception_chain",
    "get_bool",
    "get_ca_cert_files",
    "get_number",
    "get_str",
    "get_url",
    "is_ip_or_localhost",
    "object_key",
    "parse_proxy",
    "ping",
    "redact",
    "warn_unknown_keys",
]

log = logging.getLogger("nydus.backend")

#: HTTP statuses a remote backend retries (up to ``retry_limit``): server errors that may pass.
RETRY_STATUSES = frozenset({500, 502, 503, 504})

# -- config values ------------------------------------------------------------------------------


def get_str(config: Mapping[str, Any], key: str, default: str = "", *, prefix: str = "") -> str:
    """Return ``config[key]`` as a stripped string (``default`` when missing or null)."""
    value = config.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, not {type(value).__name__}", key=prefix + key)
    return value.strip()


def get_bool(config: Mapping[str, Any], key: str, default: bool, *, prefix: str = "") -> bool:
    """Return ``config[key]`` as a bool (JSON/TOML ``true``/``false`` only)."""
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false, not {value!r}", key=prefix + key)
    return value


def get_number(
    config: Mapping[str, Any],
    key: str,
    default: float,
    *,
    minimum: float = 0,
    integer: bool = False,
    prefix: str = "",
) -> Any:
    """Return ``config[key]`` as a number at least ``minimum`` (an int when ``integer``)."""
    value = config.get(key, default)
    wrong_type = isinstance(value, bool) or not isinstance(value, int | float)
    if wrong_type or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"must be {kind}, not {value!r}", key=prefix + key)
    if value < minimum:
        raise ConfigError(f"must be at least {minimum}, not {value!r}", key=prefix + key)
    return value


def get_url(config: Mapping[str, Any], key: str, *, prefix: str = "") -> str:
    """Return ``config[key]``: empty, or an ``http(s)://`` URL."""
    value = get_str(config, key, prefix=prefix)
    if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
        raise ConfigError(f"must be an http:// or https:// URL, not {redact(value)!r}", key=prefix + key)
    return value


def get_ca_cert_files(config: Mapping[str, Any], key: str = "ca_cert_files") -> tuple[str, ...]:
    """Return ``config[key]``: a list of readable PEM files (a single string is accepted too)."""
    value = config.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of file paths", key=key)
    for path in value:
        if not os.path.isfile(path):
            raise ConfigError(f"CA certificate file {path!r} does not exist", key=key)
        if not os.access(path, os.R_OK):
            raise ConfigError(f"CA certificate file {path!r} is not readable", key=key)
    return tuple(value)


def warn_unknown_keys(config: Mapping[str, Any], known: Iterable[str], where: str) -> list[str]:
    """Log a warning naming keys of ``config`` not in ``known`` (upstream ignores them too)."""
    unknown = sorted(set(config) - set(known))
    if unknown:
        log.warning("%s: ignoring unknown config keys: %s", where, ", ".join(unknown))
    return unknown


def is_ip_or_localhost(endpoint: str) -> bool:
    """Return whether ``endpoint`` (``host[:port]`` or a URL) names an IP address or localhost."""
    netloc = endpoint if "://" in endpoint else f"//{endpoint}"
    host = urlsplit(netloc).hostname or ""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def object_key(prefix: str, blob_id: str, backend: str) -> str:
    """Return ``prefix + blob_id`` (a ``sha256:`` prefix dropped), as upstream names blob objects.

    An empty id, one with surrounding blanks, or one starting with ``/`` names no blob:
    :class:`~nydus_core.errors.BlobNotFoundError`.
    """
    bare = blob_id.removeprefix("sha256:")
    if not bare or bare != bare.strip() or bare.startswith("/"):
        raise BlobNotFoundError(f"{backend} backend: {blob_id!r} is not a blob id")
    return prefix + bare


# -- redaction ----------------------------------------------------------------------------------

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
_URL_QUERY = re.compile(r"(?P<url>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?'\"]+)\?[^\s'\")]*")
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(basic|bearer)?\s*[^\s'\",}]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` without ``secrets`` (each at least 4 chars) and without ``user:pass@`` in URLs."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


class Redactor:
    """Scrubs text for messages and logs: known secrets, URL user-info, URL query strings (pre-signed
    URLs carry signatures) and ``Authorization`` values. Thread-safe; remembers the last ``keep``
    transient secrets (tokens) it was told about."""

    def __init__(self, *secrets: str, keep: int = 64) -> None:
        self._lock = threading.Lock()
        self._fixed: set[str] = set()
        self._recent: deque[str] = deque(maxlen=keep)
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None, *, transient: bool = False) -> None:
        """Remember ``secret`` (ignored when shorter than 4 characters)."""
        if not secret or len(secret) < 4:
            return
        with self._lock:
            if transient:
                self._recent.append(secret)
            else:
                self._fixed.add(secret)

    def __call__(self, text: object) -> str:
        """Return ``text`` as a string with every secret, user-info, URL query and credential replaced."""
        with self._lock:
            secrets = {*self._fixed, *self._recent}
        out = redact(str(text), secrets)
        out = _URL_QUERY.sub(r"\g<url>?…", out)
        return _AUTH_HEADER.sub(r"\1***", out)


def exception_chain(exc: BaseException) -> Iterable[BaseException]:
    """Yield ``exc`` and its causes/contexts, outermost first."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def ca_bundle(files: Iterable[str]) -> str:
    """Concatenate PEM ``files`` into one temporary file and return its path (the caller removes it)."""
    with tempfile.NamedTemporaryFile("wb", prefix="nydus-ca-", suffix=".pem", delete=False) as out:
        for path in files:
            with open(path, "rb") as src:
                out.write(src.read().rstrip(b"\n") + b"\n")
    return out.name


class ExactSizeReader:
    """Read-only stream over ``stream`` that raises BackendError unless it holds exactly ``size`` bytes.

    The error comes from the read that finds the end too early (or data past ``size``), so an SDK
    upload in progress fails and stores nothing. ``size=None`` passes the stream through unchecked.
    """

    def __init__(self, stream: Any, size: int | None, what: str) -> None:
        self._stream = stream
        self._size = size
        self._what = what
        self.count = 0

    def readable(self) -> bool:
        """Streams are readable."""
        return True

    def seekable(self) -> bool:
        """Not seekable: SDKs must read it once, in order."""
        return False

    def read(self, n: int = -1) -> bytes:
        """Read ``n`` bytes (the rest with ``n < 0``), checking the total against ``size``.

        Short reads of the underlying stream (a pipe) are joined: fewer than ``n`` bytes come back only
        at the end of the stream, which SDKs take as the end of the upload.
        """
        whole = n is None or n < 0
        if self._size is None:
            data = self._read_full(None if whole else n)
            self.count += len(data)
            return data
        remaining = self._size - self.count
        if remaining == 0:
            if n != 0:
                self._check_end()
            return b""
        want = remaining if whole else min(n, remaining)
        data = self._read_full(want)
        if len(data) < want:
            raise BackendError(
                f"{self._what}: the stream ended after {self.count + len(data)} of the declared "
                f"{self._size} bytes"
            )
        self.count += len(data)
        if whole:
            self._check_end()
        return data

    def _read_full(self, want: int | None) -> bytes:
        """Read ``want`` bytes (all with ``None``), looping over short reads; fewer only at the end."""
        parts = []
        got = 0
        while want is None or got < want:
            chunk = self._stream.read(-1 if want is None else want - got)
            if not chunk:
                break
            parts.append(bytes(chunk))
            got += len(chunk)
        return b"".join(parts)

    def _check_end(self) -> None:
        if self._stream.read(1):
            raise BackendError(f"{self._what}: the stream holds more than the declared {self._size} bytes")


# -- the Dragonfly proxy --------------------------------------------------------------------------

PROXY_KEYS = frozenset(
    {"url", "ping_url", "fallback", "check_interval", "use_http", "check_pause_elapsed",
     "dragonfly_scheduler_endpoint"}
)


@dataclass(frozen=True)
class ProxySettings:
    """Upstream's ``proxy`` block: requests go through ``url`` (a dfdaemon proxy) while it is healthy."""

    url: str = ""
    ping_url: str = ""
    fallback: bool = True
    check_interval: float = 5.0
    use_http: bool = False
    check_pause_elapsed: float = 300.0

    @property
    def enabled(self) -> bool:
        """Whether a proxy is configured at all."""
        return bool(self.url)

    def as_dict(self) -> dict[str, Any]:
        """Return the block in upstream's key names."""
        return {
            "url": self.url,
            "ping_url": self.ping_url,
            "fallback": self.fallback,
            "check_interval": self.check_interval,
            "use_http": self.use_http,
            "check_pause_elapsed": self.check_pause_elapsed,
        }


def parse_proxy(config: Mapping[str, Any], where: str) -> ProxySettings:
    """Check the ``proxy`` block of a backend ``config`` (``where`` names the backend in warnings)."""
    block = config.get("proxy") or {}
    if not isinstance(block, Mapping):
        raise ConfigError("must be an object with 'url', 'fallback', ...", key="proxy")
    warn_unknown_keys(block, PROXY_KEYS, f"{where} proxy")
    if get_str(block, "dragonfly_scheduler_endpoint", prefix="proxy."):
        raise ConfigError(
            "Dragonfly SDK mode is not supported; set proxy.url to a dfdaemon proxy instead",
            key="proxy.dragonfly_scheduler_endpoint",
        )
    return ProxySettings(
        url=get_url(block, "url", prefix="proxy."),
        ping_url=get_url(block, "ping_url", prefix="proxy."),
        fallback=get_bool(block, "fallback", True, prefix="proxy."),
        check_interval=get_number(block, "check_interval", 5, prefix="proxy."),
        use_http=get_bool(block, "use_http", False, prefix="proxy."),
        check_pause_elapsed=get_number(block, "check_pause_elapsed", 300, prefix="proxy."),
    )


def ping(url: str, timeout: float) -> bool:
    """Return whether ``url`` answers an HTTP GET with a non-5xx status (environment proxies unused)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


class ProxyRoute:
    """Thread-safe health state of one proxy: whether the next request should go through it.

    Without ``fallback`` every request uses the proxy. With it, :meth:`mark_down` sends requests
    direct for ``check_interval`` seconds; then one caller probes ``ping_url`` (or, without one, simply
    tries the proxy again) and requests return to the proxy when it answers.
    """

    def __init__(
        self,
        settings: ProxySettings,
        *,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[str, float], bool] = ping,
    ) -> None:
        self.settings = settings
        self._timeout = timeout
        self._clock = clock
        self._probe = probe
        self._lock = threading.Lock()
        self._healthy = True
        self._down_since = 0.0

    @property
    def healthy(self) -> bool:
        """Whether the proxy is currently considered up."""
        with self._lock:
            return self._healthy

    def use_proxy(self) -> bool:
        """Return whether the next request should go through the proxy."""
        if not self.settings.enabled:
            return False
        if not self.settings.fallback:
            return True
        with self._lock:
            if self._healthy:
                return True
            if self._clock() - self._down_since < self.settings.check_interval:
                return False
            self._down_since = self._clock()  # this caller re-checks; the others keep going direct
        ok = self._probe(self.settings.ping_url, self._timeout) if self.settings.ping_url else True
        if ok:
            with self._lock:
                if not self._healthy:
                    log.info("proxy %s is back; requests go through it again", redact(self.settings.url))
                self._healthy = True
        return ok

    def mark_down(self, reason: str) -> None:
        """Record a failed request through the proxy; requests go direct until the next check."""
        with self._lock:
            was = self._healthy
            self._healthy = False
            self._down_since = self._clock()
        if was:
            log.warning("proxy %s failed (%s); falling back to the origin", redact(self.settings.url), reason)
