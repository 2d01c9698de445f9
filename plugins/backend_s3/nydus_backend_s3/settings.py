"""The ``s3`` backend's config keys (upstream nydusd's ``S3Config``), checked and with defaults.

Upstream keys: ``scheme`` ("https"), ``endpoint`` (``host[:port]``, no scheme; empty means AWS),
``region`` (required for AWS; "us-east-1" with a custom endpoint), ``bucket_name`` (required),
``object_prefix``, ``access_key_id`` and ``access_key_secret`` (both, or neither for anonymous
access), ``skip_verify``, ``ca_cert_files``, ``timeout`` (5 s), ``connect_timeout`` (5 s),
``retry_limit`` (0) and the Dragonfly ``proxy`` block. Problems raise ConfigError naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nydus_core.errors import ConfigError
from nydus_core.remote_backend import (
    ProxySettings,
    get_bool,
    get_ca_cert_files,
    get_number,
    get_str,
    is_ip_or_localhost,
    parse_proxy,
    warn_unknown_keys,
)

KEYS = frozenset({
    "scheme", "endpoint", "region", "bucket_name", "object_prefix", "access_key_id", "access_key_secret",
    "skip_verify", "ca_cert_files", "timeout", "connect_timeout", "retry_limit", "proxy",
})
#: Keys upstream configs may carry that this backend accepts without using them.
IGNORED_KEYS = frozenset({"mirrors", "meta_prefix"})


@dataclass(frozen=True)
class S3Settings:
    """Validated ``s3`` backend config."""

    bucket_name: str
    scheme: str = "https"
    endpoint: str = ""
    region: str = "us-east-1"
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
        """The URL boto3 talks to, or ``None`` to let boto3 pick AWS's endpoint for the region."""
        return f"{self.scheme}://{self.endpoint}" if self.endpoint else None

    @property
    def path_style(self) -> bool:
        """Whether the bucket goes in the path (IP and localhost endpoints) rather than the host name."""
        return bool(self.endpoint) and is_ip_or_localhost(self.endpoint)

    def location(self, key: str = "") -> str:
        """Return ``s3://bucket/key`` for messages."""
        return f"s3://{self.bucket_name}/{key}"

    def as_dict(self) -> dict[str, Any]:
        """Return the config with defaults filled in, in upstream's key names."""
        return {
            "scheme": self.scheme,
            "endpoint": self.endpoint,
            "region": self.region,
            "bucket_name": self.bucket_name,
            "object_prefix": self.object_prefix,
            "access_key_id": self.access_key_id,
            "access_key_secret": self.access_key_secret,
            "skip_verify": self.skip_verify,
            "ca_cert_files": list(self.ca_cert_files),
            "timeout": self.timeout,
            "connect_timeout": self.connect_timeout,
            "retry_limit": self.retry_limit,
            "proxy": self.proxy.as_dict(),
        }


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


def parse_settings(config: Mapping[str, Any]) -> S3Settings:
    """Check an ``s3`` backend config and return it as :class:`S3Settings`."""
    if not isinstance(config, Mapping):
        raise ConfigError("the s3 backend config must be an object", key="config")
    warn_unknown_keys(config, KEYS | IGNORED_KEYS, "s3 backend")
    scheme = (get_str(config, "scheme", "https") or "https").lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"must be 'http' or 'https', not {scheme!r}", key="scheme")
    endpoint = parse_endpoint(config)
    bucket = get_str(config, "bucket_name")
    if not bucket:
        raise ConfigError("is required", key="bucket_name")
    if "/" in bucket:
        raise ConfigError(f"must be a bucket name, not a path ({bucket!r})", key="bucket_name")
    region = get_str(config, "region")
    if not region:
        if not endpoint:
            raise ConfigError("is required when no endpoint is given (AWS S3)", key="region")
        region = "us-east-1"
    key_id, secret = parse_credentials(config)
    return S3Settings(
        bucket_name=bucket,
        scheme=scheme,
        endpoint=endpoint,
        region=region,
        object_prefix=get_str(config, "object_prefix"),
        access_key_id=key_id,
        access_key_secret=secret,
        skip_verify=get_bool(config, "skip_verify", False),
        ca_cert_files=get_ca_cert_files(config),
        timeout=get_number(config, "timeout", 5, minimum=0.001),
        connect_timeout=get_number(config, "connect_timeout", 5, minimum=0.001),
        retry_limit=get_number(config, "retry_limit", 0, integer=True),
        proxy=parse_proxy(config, "s3 backend"),
    )
