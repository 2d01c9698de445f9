"""What the object-store backends (s3, oss) share; no third-party imports (the SDKs stay in the plugins).

- :class:`ObjectStoreSettings`: the keys upstream's ``S3Config`` and ``OssConfig`` have in common,
  checked into a dataclass that each plugin subclasses (s3 adds ``region``).
- :class:`ErrorCodes`: an object store's error codes and HTTP statuses to the core's BackendError kinds.
- :class:`ObjectStoreBackend`: a :class:`~nydus_core.interfaces.Backend` doing what does not depend on
  the SDK (config, object keys, the Dragonfly proxy's health and fallback through
  :class:`~nydus_core.remote_backend.ProxyHealth`, the CA bundle, range checks, the exact-size upload
  stream); a plugin adds its SDK handles, one ranged GET, one HEAD and the upload.
"""

from __future__ import annotations

import abc
import io
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, BinaryIO, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

from .errors import (
    AuthError,
    BackendError,
    BlobNotFoundError,
    ConfigError,
    NydusError,
    PermissionDeniedError,
    TransientBackendError,
)
from .interfaces import Backend
from .remote_backend import (
    ExactSizeReader,
    ProxyHealth,
    ProxySettings,
    Redactor,
    ca_bundle,
    get_bool,
    get_ca_cert_files,
    get_number,
    get_str,
    object_key,
    parse_proxy,
    redact,
    warn_unknown_keys,
)

__all__ = [
    "ErrorCodes",
    "ObjectStoreBackend",
    "ObjectStoreSettings",
    "parse_credentials",
    "parse_endpoint",
    "parse_scheme",
    "unmapped_error",
]

T = TypeVar("T")
#: The SDK object an object-store backend makes requests with (an S3 client, an OSS bucket).
H = TypeVar("H")
S = TypeVar("S", bound="ObjectStoreSettings")

# -- config ---------------------------------------------------------------------------------------


def parse_scheme(config: Mapping[str, Any]) -> str:
    """Return ``scheme`` (``https`` when missing or empty): ``http`` or ``https``."""
    scheme = (get_str(config, "scheme", "https") or "https").lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"must be 'http' or 'https', not {scheme!r}", key="scheme")
    return scheme


def parse_endpoint(config: Mapping[str, Any]) -> str:
    """Return ``endpoint`` as ``host[:port]``; a scheme or a path in it is an error."""
    endpoint = get_str(config, "endpoint").rstrip("/")
    if "://" in endpoint:
        raise ConfigError(
            f"must not include the scheme (got {endpoint!r}); put it in 'scheme'", key="endpoint"
        )
    if "/" in endpoint:
        raise ConfigError(f"must be host[:port] only, not {endpoint!r}", key="endpoint")
    return endpoint


def parse_credentials(config: Mapping[str, Any]) -> tuple[str, str]:
    """Return ``(access_key_id, access_key_secret)``: both set, or both empty."""
    key_id = get_str(config, "access_key_id")
    secret = config.get("access_key_secret") or ""
    if not isinstance(secret, str):
        raise ConfigError("must be a string", key="access_key_secret")
    if bool(key_id) != bool(secret):
        missing = "access_key_secret" if key_id else "access_key_id"
        raise ConfigError("access_key_id and access_key_secret must be given together", key=missing)
    return key_id, secret


@dataclass(frozen=True, kw_only=True)
class ObjectStoreSettings:
    """Validated object-store backend config: the keys s3 and oss share.

    Subclasses set ``backend`` (the backend's name, also the scheme of :meth:`location`), ``KEYS``
    and ``IGNORED_KEYS``, and may check more in :meth:`check_endpoint`, :meth:`check_bucket` and
    :meth:`parse_extra` (which returns the values of the subclass's own fields).
    """

    backend: ClassVar[str] = ""
    KEYS: ClassVar[frozenset[str]] = frozenset()
    #: Keys upstream configs may carry that the backend accepts without using them.
    IGNORED_KEYS: ClassVar[frozenset[str]] = frozenset()

    bucket_name: str
    scheme: str = "https"
    endpoint: str = ""
    object_prefix: str = ""
    access_key_id: str = field(default="", repr=False)
    access_key_secret: str = field(default="", repr=False)
    skip_verify: bool = False
    ca_cert_files: tuple[str, ...] = ()
    timeout: float = 5.0
    connect_timeout: float = 5.0
    retry_limit: int = 0
    proxy: ProxySettings = field(default_factory=ProxySettings)

    @property
    def endpoint_url(self) -> str | None:
        """``scheme://endpoint``, or ``None`` without an endpoint (the SDK's default service)."""
        return f"{self.scheme}://{self.endpoint}" if self.endpoint else None

    def location(self, key: str = "") -> str:
        """Return ``<backend>://bucket/key`` for messages."""
        return f"{self.backend}://{self.bucket_name}/{key}"

    def as_dict(self) -> dict[str, Any]:
        """Return the config with defaults filled in, in upstream's key names."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ProxySettings):
                value = value.as_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def check_endpoint(cls, endpoint: str) -> None:
        """Override: raise ConfigError if ``endpoint`` (``host[:port]`` or empty) is not acceptable."""

    @classmethod
    def check_bucket(cls, bucket: str) -> None:
        """Override: raise ConfigError if ``bucket`` (not empty) is not a bucket name."""

    @classmethod
    def parse_extra(cls, config: Mapping[str, Any], endpoint: str) -> dict[str, Any]:
        """Override: check the subclass's own keys and return its fields' values."""
        return {}

    @classmethod
    def parse(cls: type[S], config: Mapping[str, Any]) -> S:
        """Check a backend config and return it as settings (ConfigError naming the bad key)."""
        where = f"{cls.backend} backend"
        if not isinstance(config, Mapping):
            raise ConfigError(f"the {where} config must be an object", key="config")
        warn_unknown_keys(config, cls.KEYS | cls.IGNORED_KEYS, where)
        scheme = parse_scheme(config)
        endpoint = parse_endpoint(config)
        cls.check_endpoint(endpoint)
        bucket = get_str(config, "bucket_name")
        if not bucket:
            raise ConfigError("is required", key="bucket_name")
        cls.check_bucket(bucket)
        extra = cls.parse_extra(config, endpoint)
        key_id, secret = parse_credentials(config)
        return cls(
            bucket_name=bucket,
            scheme=scheme,
            endpoint=endpoint,
            object_prefix=get_str(config, "object_prefix"),
            access_key_id=key_id,
            access_key_secret=secret,
            skip_verify=get_bool(config, "skip_verify", False),
            ca_cert_files=get_ca_cert_files(config),
            timeout=get_number(config, "timeout", 5, minimum=0.001),
            connect_timeout=get_number(config, "connect_timeout", 5, minimum=0.001),
            retry_limit=get_number(config, "retry_limit", 0, integer=True),
            proxy=parse_proxy(config, where),
            **extra,
        )


# -- errors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCodes:
    """An object store's error codes by kind; :meth:`error` turns one error answer into a BackendError."""

    not_found: frozenset[str]
    auth: frozenset[str]
    permission: frozenset[str]
    transient: frozenset[str]

    def error(
        self, prefix: str, code: str, status: int, message: str, secrets: Iterable[str] = ()
    ) -> BackendError:
        """Return the error for a server answer ``code`` (may be empty) with HTTP ``status``.

        ``prefix`` says what was being done; the server's code and (redacted) message are kept so
        users see what it said.
        """
        message = redact(message, secrets)
        detail = f"{code or status}" + (f": {message}" if message and message != code else "")
        if code == "NoSuchBucket":
            return BlobNotFoundError(f"{prefix}: the bucket does not exist ({detail})")
        if code in self.not_found or (not code and status == 404):
            return BlobNotFoundError(f"{prefix}: not found ({detail})")
        if code in self.auth or status == 401:
            return AuthError(f"{prefix}: credentials rejected ({detail})")
        if code in self.permission or status == 403:
            return PermissionDeniedError(f"{prefix}: permission denied ({detail})")
        if code in self.transient or status >= 500 or status == 429:
            return TransientBackendError(f"{prefix}: server error ({detail})")
        return BackendError(f"{prefix}: {detail}")


def unmapped_error(exc: BaseException, prefix: str, secrets: Iterable[str] = ()) -> BackendError:
    """The error for an exception no SDK rule matched: ``exc`` itself if it is a BackendError."""
    if isinstance(exc, BackendError):
        return exc
    return BackendError(f"{prefix}: {type(exc).__name__}: {redact(str(exc), secrets)}")


# -- the backend ----------------------------------------------------------------------------------


class ObjectStoreBackend(Backend, Generic[H]):
    """Blobs as objects ``<object_prefix><blob_id>`` in one bucket; the SDK parts are the subclass's.

    Subclasses set ``name`` and ``settings_class`` and implement :meth:`_handle` (an SDK client for
    the direct or the proxied route, of the class parameter's type ``H``), :meth:`_get_range`,
    :meth:`_head_size`, :meth:`_upload`, :meth:`_is_proxy_failure`, :meth:`_map_error` and
    :meth:`_close_handles`; they may use :meth:`call`, :meth:`tls_verify`, :meth:`secrets`,
    :meth:`key_of` and ``handles_lock``. Reads go through the Dragonfly proxy while it is healthy
    (falling back to the bucket when it fails); writes never do.
    """

    settings_class: ClassVar[type[ObjectStoreSettings]]
    #: ``verify`` for the SDK when no ``ca_cert_files`` are given (the system's trust store).
    default_verify: ClassVar[bool | None] = None
    #: What :meth:`__repr__` shows for a config without ``endpoint``.
    default_endpoint: ClassVar[str] = "default"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.settings = self.settings_class.parse(config)
        super().__init__(self.settings.as_dict())
        #: Guards the SDK handles a subclass creates lazily (per thread, per route).
        self.handles_lock = threading.Lock()
        self._bundle_lock = threading.Lock()
        self._ca_bundle: str | None = None
        proxy = self.settings.proxy
        #: The Dragonfly proxy's health (``None`` without a proxy ``url``); see :class:`ProxyHealth`.
        self.proxy_health = (
            ProxyHealth(proxy, timeout=min(self.settings.connect_timeout, 2.0), origin="the bucket",
                        redact=Redactor(*self.secrets(), urlsplit(proxy.url).password or ""))
            if proxy.enabled else None
        )
        self.log = logging.getLogger(f"nydus.backend.{self.name}")

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"<{type(self).__name__} {s.location(s.object_prefix)} "
            f"endpoint={s.endpoint_url or self.default_endpoint}>"
        )

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check the config (ConfigError naming the key) and return it with defaults filled in."""
        return cls.settings_class.parse(config).as_dict()

    # -- for subclasses ---------------------------------------------------------------------------

    @abc.abstractmethod
    def _handle(self, proxied: bool) -> H:
        """Return the SDK object requests are made with (through the proxy when ``proxied``)."""

    @abc.abstractmethod
    def _get_range(self, handle: H, key: str, offset: int, end: int) -> bytes:
        """GET bytes ``offset..end`` (inclusive) of object ``key``: fewer at its end, none past it."""

    @abc.abstractmethod
    def _head_size(self, handle: H, key: str) -> int:
        """Return the size of object ``key`` from a HEAD request."""

    @abc.abstractmethod
    def _upload(self, key: str, source: ExactSizeReader, size: int | None, what: str) -> None:
        """Store ``source`` as object ``key`` (use ``self.call(what, ..., via_proxy=False)``)."""

    @abc.abstractmethod
    def _is_proxy_failure(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the proxy (not the object store) failed."""

    @abc.abstractmethod
    def _map_error(self, exc: BaseException, what: str) -> BackendError:
        """Return the BackendError for an SDK exception raised while doing ``what``."""

    def _close_handles(self) -> None:
        """Close the SDK objects' connection pools."""

    def _proxy_failure_reason(self, exc: BaseException) -> str:
        """What the log says about a failed proxied request (redacted by the caller)."""
        return f"{type(exc).__name__}: {exc}"

    # -- shared plumbing --------------------------------------------------------------------------

    def secrets(self) -> tuple[str, ...]:
        """The config values log lines and error messages must never show (redacted)."""
        return (self.settings.access_key_secret,)

    def tls_verify(self) -> bool | str | None:
        """TLS verification for the SDK: off, ``default_verify``, one CA file, or a merged bundle."""
        s = self.settings
        if s.skip_verify:
            return False
        if not s.ca_cert_files:
            return self.default_verify
        if len(s.ca_cert_files) == 1:
            return s.ca_cert_files[0]
        with self._bundle_lock:
            if self._ca_bundle is None:
                self._ca_bundle = ca_bundle(s.ca_cert_files)
            return self._ca_bundle

    def call(self, what: str, op: Callable[[H], T], *, via_proxy: bool = True) -> T:
        """Run ``op(handle)`` through the proxy when it is healthy, else directly; map SDK errors."""
        try:
            health = self.proxy_health
            if via_proxy and health is not None and health.use_proxy():
                try:
                    return op(self._handle(True))
                except Exception as exc:
                    if not self._is_proxy_failure(exc):
                        raise
                    health.mark_failed(self._proxy_failure_reason(exc))
                    if not self.settings.proxy.fallback:
                        raise
            return op(self._handle(False))
        except NydusError:
            raise
        except Exception as exc:
            raise self._map_error(exc, what) from exc

    def key_of(self, blob_id: str) -> str:
        """Return the object key of ``blob_id`` (``object_prefix`` + id)."""
        return object_key(self.settings.object_prefix, blob_id, self.name)

    # -- Backend API ------------------------------------------------------------------------------

    def size(self, blob_id: str) -> int:
        """Return the blob's size from a HEAD request."""
        key = self.key_of(blob_id)
        where = self.settings.location(key)
        self.log.debug("HEAD %s", where)
        return self.call(f"HEAD {where}", lambda h: self._head_size(h, key))

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset`` with one ranged GET (fewer at the end, none past it)."""
        if offset < 0 or length < 0:
            raise ValueError(f"negative offset or length ({offset}, {length})")
        if length == 0:
            return b""
        key = self.key_of(blob_id)
        end = offset + length - 1
        where = self.settings.location(key)
        self.log.debug("GET %s bytes=%d-%d", where, offset, end)
        what = f"GET {where} (bytes={offset}-{end})"
        return self.call(what, lambda h: self._get_range(h, key, offset, end))

    def write(self, blob_id: str, stream: BinaryIO, size: int | None = None) -> None:
        """Upload ``stream`` as the blob.

        With ``size``, a stream that holds a different number of bytes fails the upload (a multipart
        upload is aborted) and nothing is stored.
        """
        key = self.key_of(blob_id)
        if isinstance(stream, bytes | bytearray | memoryview):
            stream = io.BytesIO(bytes(stream))
        what = f"PUT {self.settings.location(key)}"
        source = ExactSizeReader(stream, size, f"{self.name} backend: {what}")
        self._upload(key, source, size, what)

    def close(self) -> None:
        """Stop the proxy health checker, close the SDK's connection pools, remove the temporary CA bundle."""
        if self.proxy_health is not None:
            self.proxy_health.close()
        self._close_handles()
        with self._bundle_lock:
            bundle, self._ca_bundle = self._ca_bundle, None
        if bundle:
            try:
                os.unlink(bundle)
            except OSError:
                pass
