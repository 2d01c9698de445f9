"""Helpers shared by remote backend plugins (s3, oss, registry, ...); no third-party imports.

- Config value checks that raise :class:`~nydus_core.errors.ConfigError` naming the key
  (:func:`get_str`, :func:`get_bool`, :func:`get_number`, :func:`get_url`, :func:`get_ca_cert_files`,
  :func:`warn_unknown_keys`).
- Upstream's Dragonfly ``proxy`` block (:class:`ProxySettings`, :func:`parse_proxy`) and the one
  health policy every remote backend uses (:class:`ProxyHealth`): a background checker pings
  ``ping_url`` (or connects to the proxy) every ``check_interval``, pausing after
  ``check_pause_elapsed`` idle; requests go through the proxy while it is healthy and fall back to
  the origin when it is not.
- :func:`redact` and :class:`Redactor`: the one redaction rule of :mod:`nydus_core.redact` (URL
  user-info, query values, ``Authorization`` values, known secrets), re-exported for backends.
- :func:`ca_bundle`: one PEM file from several ``ca_cert_files``.
- :func:`object_key`: the object name of a blob in an object store (``object_prefix + blob_id``).
- :class:`ExactSizeReader`: a stream wrapper that fails an upload whose stream is shorter or longer
  than the size the caller declared.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import socket
import tempfile
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from .errors import BackendError, BlobNotFoundError, ConfigError
from .redact import Redactor, redact

__all__ = [
    "RETRY_STATUSES",
    "ExactSizeReader",
    "ProxyHealth",
    "ProxySettings",
    "Redactor",
    "ca_bundle",
    "can_connect",
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


# -- redaction: the one rule lives in nydus_core.redact; re-exported here for backends --------

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

    def __init__(self, stream: BinaryIO, size: int | None, what: str) -> None:
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
        """Return the block in upstream's key names (the fields' names)."""
        return dataclasses.asdict(self)


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
    settings = ProxySettings(
        url=get_url(block, "url", prefix="proxy."),
        ping_url=get_url(block, "ping_url", prefix="proxy."),
        fallback=get_bool(block, "fallback", True, prefix="proxy."),
        check_interval=get_number(block, "check_interval", 5, prefix="proxy."),
        use_http=get_bool(block, "use_http", False, prefix="proxy."),
        check_pause_elapsed=get_number(block, "check_pause_elapsed", 300, prefix="proxy."),
    )
    if settings.enabled and settings.check_interval <= 0:  # the checker would spin
        raise ConfigError("must be > 0", key="proxy.check_interval")
    return settings


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers, not health: a 3xx from the health endpoint is not 2xx."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def ping(url: str, timeout: float) -> bool:
    """Return whether ``url`` answers an HTTP GET with a 2xx status (no redirects, no environment proxies)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (OSError, ValueError):  # HTTPError (non-2xx) is an OSError too
        return False


def can_connect(url: str, timeout: float) -> bool:
    """Return whether a TCP connection to ``url``'s host and port (80/443 by scheme) opens."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _run_checker(ref: weakref.ref[ProxyHealth], stop: threading.Event, wake: threading.Event) -> None:
    """The checker thread's loop; it holds its ProxyHealth weakly and ends when that is gone or closed."""
    while not stop.is_set():
        health = ref()
        if health is None:
            return
        interval = health.settings.check_interval
        del health
        wake.wait(interval)
        wake.clear()
        health = ref()
        if health is None or stop.is_set():
            return
        health._scheduled_check()
        del health


class ProxyHealth:
    """Whether requests go through one Dragonfly proxy: upstream's one health policy for every backend.

    On first use :meth:`available` checks the proxy synchronously and starts a background daemon
    thread that checks it again every ``check_interval`` seconds: a GET of ``ping_url`` (healthy on
    2xx), or without one a TCP connect to the proxy. Checks pause once nobody has asked for
    ``check_pause_elapsed`` seconds (0: never) and resume with the next request. A request that fails
    to reach the proxy calls :meth:`mark_failed`: it is down until the next successful check.
    :meth:`use_proxy` is the per-request decision: never without a proxy ``url``, always with
    ``fallback`` off, else while healthy. Thread-safe; :meth:`close` stops the checker (which also
    ends by itself once this object is garbage).
    """

    def __init__(
        self,
        settings: ProxySettings,
        *,
        timeout: float = 2.0,
        redact: Callable[[str], str] | None = None,
        ping: Callable[[], bool] | None = None,
        origin: str = "the origin",
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        #: What requests fall back to, for log lines ("the registry", "the bucket").
        self.origin = origin
        self._redact = redact or Redactor(urlsplit(settings.url).password or "")
        self._ping = ping  # None: the default check (a bound method here would be a reference cycle)
        self._lock = threading.Lock()
        self._healthy: bool | None = None
        self._last_activity = time.monotonic()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: How many health checks ran.
        self.checks = 0

    # -- checks -------------------------------------------------------------------------------

    def _default_ping(self) -> bool:
        if self.settings.ping_url:
            return ping(self.settings.ping_url, self.timeout)
        return can_connect(self.settings.url, self.timeout)

    def check_now(self) -> bool:
        """Run one health check and record its result."""
        ok = bool(self._ping() if self._ping is not None else self._default_ping())
        self.checks += 1
        with self._lock:
            changed = self._healthy is not None and ok != self._healthy
            self._healthy = ok
        if changed:
            if ok:
                state = "healthy again: using it"
            elif self.settings.fallback:
                state = f"down: falling back to {self.origin}"
            else:
                state = "down"
            log.warning("Dragonfly proxy %s is %s", self._redact(self.settings.url), state)
        return ok

    def _scheduled_check(self) -> None:
        """The checker's periodic check, skipped while paused (nobody asked for a while)."""
        pause = self.settings.check_pause_elapsed
        if pause and time.monotonic() - self._last_activity > pause:
            return
        self.check_now()

    # -- state --------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """The last known health (``False`` before the first check)."""
        with self._lock:
            return bool(self._healthy)

    def available(self) -> bool:
        """Called per request: whether the proxy is healthy now.

        Notes the activity (un-pausing the checker), and on first use checks synchronously and
        starts the background checker.
        """
        now = time.monotonic()
        pause = self.settings.check_pause_elapsed
        paused = bool(pause) and now - self._last_activity > pause
        self._last_activity = now
        if self._thread is None:
            thread: threading.Thread | None = None
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    thread = self._thread = threading.Thread(
                        target=_run_checker, args=(weakref.ref(self), self._stop, self._wake),
                        name="dragonfly-proxy-health", daemon=True)
            if thread is not None:
                self.check_now()
                thread.start()
        elif paused:
            self._wake.set()
        with self._lock:
            return bool(self._healthy)

    def use_proxy(self) -> bool:
        """Called per request: whether it goes through the proxy (see the class docstring)."""
        if not self.settings.enabled:
            return False
        return self.available() or not self.settings.fallback

    def mark_failed(self, reason: str = "") -> None:
        """Record that a request could not reach the proxy (the next good check restores it)."""
        with self._lock:
            was, self._healthy = self._healthy, False
        if was:
            why = f" ({self._redact(reason)})" if reason else ""
            then = (f"falling back to {self.origin} until it passes a health check"
                    if self.settings.fallback else "requests keep using it (fallback is off)")
            url = self._redact(self.settings.url)
            log.warning("Dragonfly proxy %s failed a request%s: %s", url, why, then)

    def close(self) -> None:
        """Stop the checker thread."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(2)
