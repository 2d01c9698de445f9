"""The ``registry`` backend's config keys (upstream's names and defaults), checked into dataclasses.

Upstream keys: ``scheme``, ``host``, ``repo``, ``auth``, ``registry_token``, ``skip_verify``,
``ca_cert_files``, ``timeout``, ``connect_timeout``, ``retry_limit``, ``blob_url_scheme``,
``blob_redirected_host`` and the ``proxy`` block (``url``, ``ping_url``, ``fallback``,
``check_interval``, ``use_http``, ``check_pause_elapsed``). ``IMAGE_PULL_AUTH`` overrides ``auth``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from nydus_core.errors import ConfigError
from nydus_core.remote_backend import ProxySettings

log = logging.getLogger(__name__)
T = TypeVar("T")

AUTH_ENV = "IMAGE_PULL_AUTH"

_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_HOST_RE = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$")

PROXY_DEFAULTS: dict[str, Any] = {
    "url": "",
    "ping_url": "",
    "fallback": True,
    "check_interval": 5,
    "use_http": False,
    "check_pause_elapsed": 300,
}

DEFAULTS: dict[str, Any] = {
    "scheme": "https",
    "host": "",
    "repo": "",
    "auth": "",
    "registry_token": "",
    "skip_verify": False,
    "ca_cert_files": [],
    "timeout": 5,
    "connect_timeout": 5,
    "retry_limit": 0,
    "blob_url_scheme": "",
    "blob_redirected_host": "",
    "proxy": PROXY_DEFAULTS,
}


@dataclass(frozen=True)
class Credentials:
    """A user name and password (the password never appears in ``repr``)."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def from_auth(cls, auth: str, *, key: str = "auth", source: str | None = None) -> Credentials:
        """Decode upstream's ``auth`` value: base64 of ``user:pass``. The value is never quoted."""
        where = f" (from {source})" if source else ""
        try:
            text = base64.b64decode(auth.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ConfigError(f"not valid base64 of 'user:password'{where}", key=key) from None
        user, sep, password = text.partition(":")
        if not sep or not user:
            raise ConfigError(f"must be base64 of 'user:password'{where}", key=key)
        return cls(user, password)

    def to_auth(self) -> str:
        """Return the base64 ``user:pass`` form."""
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


#: The Dragonfly proxy block: requests go through ``url`` while ``ping_url`` answers (the dataclass all
#: remote backends share; this module checks it with the registry's own messages).
ProxyConfig = ProxySettings


@dataclass(frozen=True)
class RegistryConfig:
    """A validated ``registry`` backend config (secrets excluded from ``repr``)."""

    host: str
    repo: str
    scheme: str = "https"
    credentials: Credentials | None = field(default=None, repr=False)
    registry_token: str = field(default="", repr=False)
    skip_verify: bool = False
    ca_cert_files: tuple[str, ...] = ()
    timeout: float = 5
    connect_timeout: float = 5
    retry_limit: int = 0
    blob_url_scheme: str = ""
    blob_redirected_host: str = ""
    proxy: ProxyConfig = field(default_factory=ProxyConfig)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
                     ) -> RegistryConfig:
        """Validate ``config`` (see :func:`validate_config`) and apply ``IMAGE_PULL_AUTH``."""
        env = os.environ if environ is None else environ
        cfg = validate_config(config)
        auth, source = cfg["auth"], None
        if env.get(AUTH_ENV):
            auth, source = env[AUTH_ENV], AUTH_ENV
        creds = Credentials.from_auth(auth, source=source) if auth else None
        p = cfg["proxy"]
        return cls(
            host=cfg["host"],
            repo=cfg["repo"],
            scheme=cfg["scheme"],
            credentials=creds,
            registry_token=cfg["registry_token"],
            skip_verify=cfg["skip_verify"],
            ca_cert_files=tuple(cfg["ca_cert_files"]),
            timeout=cfg["timeout"],
            connect_timeout=cfg["connect_timeout"],
            retry_limit=cfg["retry_limit"],
            blob_url_scheme=cfg["blob_url_scheme"],
            blob_redirected_host=cfg["blob_redirected_host"],
            proxy=ProxyConfig(**p),
        )


def _expect(value: object, types: type[T] | tuple[type[T], ...], key: str, what: str) -> T:
    """Return ``value`` if it is an instance of ``types`` (``bool`` only where asked), else ConfigError."""
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(f"must be {what}, got {value!r}", key=key)
    if not isinstance(value, types):
        raise ConfigError(f"must be {what}, got {type(value).__name__}", key=key)
    return value


def _number(value: Any, key: str, *, minimum: float = 0, integer: bool = False) -> float | int:
    what = "a non-negative integer" if integer else "a non-negative number (seconds)"
    number = _expect(value, int if integer else (int, float), key, what)
    if number < minimum:
        raise ConfigError(f"must be >= {minimum}, got {number}", key=key)
    return number


def _validate_proxy(raw: Any) -> dict[str, Any]:
    if raw is None:
        raw = {}
    _expect(raw, Mapping, "proxy", "an object")
    out = dict(PROXY_DEFAULTS)
    for k, v in raw.items():
        key = f"proxy.{k}"
        if k in ("url", "ping_url"):
            _expect(v, str, key, "a string")
            if v and urlsplit(v).scheme not in ("http", "https"):
                raise ConfigError("must be an http:// or https:// URL", key=key)
            out[k] = v
        elif k in ("fallback", "use_http"):
            out[k] = _expect(v, bool, key, "true or false")
        elif k in ("check_interval", "check_pause_elapsed"):
            out[k] = _number(v, key)
        elif k == "dragonfly_scheduler_endpoint":
            _expect(v, str, key, "a string")
            if v:
                raise ConfigError("Dragonfly SDK mode is not supported by nydus-py; use proxy.url", key=key)
        else:
            log.warning("registry backend: ignoring unknown key proxy.%s", k)
    if out["url"] and out["check_interval"] <= 0:
        raise ConfigError("must be > 0", key="proxy.check_interval")
    return out


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``registry`` backend config; return it with upstream's defaults filled in.

    Raises :class:`~nydus_core.errors.ConfigError` naming the key. Unknown keys are logged and
    ignored (upstream ignores them too). ``auth`` is checked but never echoed.
    """
    _expect(config, Mapping, "config", "an object")
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    for k, v in config.items():
        if k in ("host", "repo", "auth", "registry_token", "blob_url_scheme", "blob_redirected_host"):
            out[k] = _expect(v, str, k, "a string")
        elif k == "scheme":
            _expect(v, str, k, "a string")
            if v not in ("", "http", "https"):
                raise ConfigError(f"must be 'http', 'https' or '' (auto), got {v!r}", key=k)
            out[k] = v
        elif k == "skip_verify":
            out[k] = _expect(v, bool, k, "true or false")
        elif k == "ca_cert_files":
            files = [v] if isinstance(v, str) else _expect(v, list, k, "a list of file paths")
            for f in files:
                _expect(f, str, k, "a list of file paths")
                if not os.path.isfile(f):
                    raise ConfigError(f"CA certificate file {f} does not exist", key=k)
            out[k] = list(files)
        elif k in ("timeout", "connect_timeout"):
            out[k] = _number(v, k)
        elif k == "retry_limit":
            out[k] = _number(v, k, integer=True)
        elif k == "proxy":
            out[k] = _validate_proxy(v)
        elif k == "mirrors":
            raise ConfigError("registry mirrors were removed upstream (v2.3.5); configure them in "
                              "nydus-snapshotter or use proxy", key=k)
        else:
            log.warning("registry backend: ignoring unknown key %s", k)
    if not out["host"]:
        raise ConfigError("is required (host[:port] of the registry)", key="host")
    if "://" in out["host"] or not _HOST_RE.match(out["host"]):
        raise ConfigError(f"must be host[:port] without scheme or path, got {out['host']!r}", key="host")
    if not out["repo"]:
        raise ConfigError("is required (repository path, e.g. 'library/ubuntu')", key="repo")
    if not _REPO_RE.match(out["repo"]):
        raise ConfigError(f"is not a valid repository name: {out['repo']!r}", key="repo")
    if out["blob_url_scheme"] not in ("", "http", "https"):
        raise ConfigError("must be 'http', 'https' or ''", key="blob_url_scheme")
    if out["blob_redirected_host"] and ("/" in out["blob_redirected_host"]
                                        or not _HOST_RE.match(out["blob_redirected_host"])):
        raise ConfigError("must be host[:port]", key="blob_redirected_host")
    if out["timeout"] <= 0:
        raise ConfigError("must be > 0", key="timeout")
    if out["connect_timeout"] <= 0:
        raise ConfigError("must be > 0", key="connect_timeout")
    if out["auth"]:
        Credentials.from_auth(out["auth"])
    return out
