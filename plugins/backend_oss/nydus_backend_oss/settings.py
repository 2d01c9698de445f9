"""The ``oss`` backend's config keys (upstream nydusd's ``OssConfig``), checked and with defaults.

Upstream keys: ``scheme`` ("https"), ``endpoint`` (required, ``host[:port]`` without scheme, e.g.
``oss-cn-hangzhou.aliyuncs.com``), ``bucket_name`` (required), ``object_prefix``, ``access_key_id`` and
``access_key_secret`` (both, or neither for anonymous access), ``skip_verify``, ``ca_cert_files``,
``timeout`` (5 s), ``connect_timeout`` (5 s), ``retry_limit`` (0) and the Dragonfly ``proxy`` block.
Problems raise :class:`~nydus_core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import re
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
    parse_proxy,
    warn_unknown_keys,
)

KEYS = frozenset({
    "scheme", "endpoint", "bucket_name", "object_prefix", "access_key_id", "access_key_secret",
    "skip_verify", "ca_cert_files", "timeout", "connect_timeout", "retry_limit", "proxy",
})
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
#: Keys upstream configs (or nydusify's backend configs) may carry that this backend does not use.
IGNORED_KEYS = frozenset({"mirrors", "meta_prefix", "region"})


@dataclass(frozen=True)
class OSSSettings:
    """Validated ``oss`` backend config."""

    endpoint: str
    bucket_name: str
    scheme: str = "https"
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
    def endpoint_url(self) -> str:
        """``scheme://endpoint``: what oss2 is given (it puts the bucket in the host name, or in the
        path for IP and localhost endpoints)."""
        return f"{self.scheme}://{self.endpoint}"

    def location(self, key: str = "") -> str:
        """Return ``oss://bucket/key`` for messages."""
        return f"oss://{self.bucket_name}/{key}"

    def as_dict(self) -> dict[str, Any]:
        """Return the config with defaults filled in, in upstream's key names."""
        return {
            "scheme": self.scheme,
            "endpoint": self.endpoint,
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


def parse_settings(config: Mapping[str, Any]) -> OSSSettings:
    """Check an ``oss`` backend config and return it as :class:`OSSSettings`."""
    if not isinstance(config, Mapping):
        raise ConfigError("the oss backend config must be an object", key="config")
    warn_unknown_keys(config, KEYS | IGNORED_KEYS, "oss backend")
    scheme = (get_str(config, "scheme", "https") or "https").lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"must be 'http' or 'https', not {scheme!r}", key="scheme")
    endpoint = get_str(config, "endpoint").rstrip("/")
    if not endpoint:
        raise ConfigError("is required (e.g. oss-cn-hangzhou.aliyuncs.com)", key="endpoint")
    if "://" in endpoint:
        raise ConfigError(
            f"must not include the scheme (got {endpoint!r}); put it in 'scheme'", key="endpoint"
        )
    if "/" in endpoint:
        raise ConfigError(f"must be host[:port] only, not {endpoint!r}", key="endpoint")
    bucket = get_str(config, "bucket_name")
    if not bucket:
        raise ConfigError("is required", key="bucket_name")
    if not BUCKET_NAME.fullmatch(bucket):
        raise ConfigError(
            f"{bucket!r} is not an OSS bucket name (3-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit)",
            key="bucket_name",
        )
    key_id = get_str(config, "access_key_id")
    secret = config.get("access_key_secret") or ""
    if not isinstance(secret, str):
        raise ConfigError("must be a string", key="access_key_secret")
    if bool(key_id) != bool(secret):
        missing = "access_key_secret" if key_id else "access_key_id"
        raise ConfigError("access_key_id and access_key_secret must be given together", key=missing)
    return OSSSettings(
        endpoint=endpoint,
        bucket_name=bucket,
        scheme=scheme,
        object_prefix=get_str(config, "object_prefix"),
        access_key_id=key_id,
        access_key_secret=secret,
        skip_verify=get_bool(config, "skip_verify", False),
        ca_cert_files=get_ca_cert_files(config),
        timeout=get_number(config, "timeout", 5, minimum=0.001),
        connect_timeout=get_number(config, "connect_timeout", 5, minimum=0.001),
        retry_limit=get_number(config, "retry_limit", 0, integer=True),
        proxy=parse_proxy(config, "oss backend"),
    )
