"""The ``s3`` backend's config keys (upstream nydusd's ``S3Config``), checked and with defaults.

Upstream keys: ``scheme`` ("https"), ``endpoint`` (``host[:port]``, no scheme; empty means AWS),
``region`` (required for AWS; "us-east-1" with a custom endpoint), ``bucket_name`` (required),
``object_prefix``, ``access_key_id`` and ``access_key_secret`` (both, or neither for anonymous
access), ``skip_verify``, ``ca_cert_files``, ``timeout`` (5 s), ``connect_timeout`` (5 s),
``retry_limit`` (0) and the Dragonfly ``proxy`` block. Problems raise ConfigError naming the key.
The keys s3 shares with oss are checked by :class:`nydus_core.object_store.ObjectStoreSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from nydus_core.errors import ConfigError
from nydus_core.object_store import ObjectStoreSettings, parse_credentials, parse_endpoint
from nydus_core.remote_backend import get_str, is_ip_or_localhost

__all__ = ["IGNORED_KEYS", "KEYS", "S3Settings", "parse_credentials", "parse_endpoint", "parse_settings"]

KEYS = frozenset({
    "scheme", "endpoint", "region", "bucket_name", "object_prefix", "access_key_id", "access_key_secret",
    "skip_verify", "ca_cert_files", "timeout", "connect_timeout", "retry_limit", "proxy",
})
#: Keys upstream configs may carry that this backend accepts without using them.
IGNORED_KEYS = frozenset({"mirrors", "meta_prefix"})


@dataclass(frozen=True, kw_only=True)
class S3Settings(ObjectStoreSettings):
    """Validated ``s3`` backend config."""

    backend: ClassVar[str] = "s3"
    KEYS: ClassVar[frozenset[str]] = KEYS
    IGNORED_KEYS: ClassVar[frozenset[str]] = IGNORED_KEYS

    region: str = "us-east-1"

    @property
    def path_style(self) -> bool:
        """Whether the bucket goes in the path (IP and localhost endpoints) rather than the host name."""
        return bool(self.endpoint) and is_ip_or_localhost(self.endpoint)

    @classmethod
    def check_bucket(cls, bucket: str) -> None:
        """A bucket name has no ``/``."""
        if "/" in bucket:
            raise ConfigError(f"must be a bucket name, not a path ({bucket!r})", key="bucket_name")

    @classmethod
    def parse_extra(cls, config: Mapping[str, Any], endpoint: str) -> dict[str, Any]:
        """``region``: required for AWS (no endpoint), "us-east-1" by default with an endpoint."""
        region = get_str(config, "region")
        if not region:
            if not endpoint:
                raise ConfigError("is required when no endpoint is given (AWS S3)", key="region")
            region = "us-east-1"
        return {"region": region}


def parse_settings(config: Mapping[str, Any]) -> S3Settings:
    """Check an ``s3`` backend config and return it as :class:`S3Settings`."""
    return S3Settings.parse(config)
