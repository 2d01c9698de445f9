"""The ``oss`` backend's config keys (upstream nydusd's ``OssConfig``), checked and with defaults.

Upstream keys: ``scheme`` ("https"), ``endpoint`` (required, ``host[:port]`` without scheme, e.g.
``oss-cn-hangzhou.aliyuncs.com``), ``bucket_name`` (required), ``object_prefix``, ``access_key_id`` and
``access_key_secret`` (both, or neither for anonymous access), ``skip_verify``, ``ca_cert_files``,
``timeout`` (5 s), ``connect_timeout`` (5 s), ``retry_limit`` (0) and the Dragonfly ``proxy`` block.
Problems raise :class:`~nydus_core.errors.ConfigError` naming the key. The keys oss shares with s3 are
checked by :class:`nydus_core.object_store.ObjectStoreSettings`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from nydus_core.errors import ConfigError
from nydus_core.object_store import ObjectStoreSettings

__all__ = ["BUCKET_NAME", "IGNORED_KEYS", "KEYS", "OSSSettings", "parse_settings"]

KEYS = frozenset({
    "scheme", "endpoint", "bucket_name", "object_prefix", "access_key_id", "access_key_secret",
    "skip_verify", "ca_cert_files", "timeout", "connect_timeout", "retry_limit", "proxy",
})
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
#: Keys upstream configs (or nydusify's backend configs) may carry that this backend does not use.
IGNORED_KEYS = frozenset({"mirrors", "meta_prefix", "region"})


@dataclass(frozen=True, kw_only=True)
class OSSSettings(ObjectStoreSettings):
    """Validated ``oss`` backend config."""

    backend: ClassVar[str] = "oss"
    KEYS: ClassVar[frozenset[str]] = KEYS
    IGNORED_KEYS: ClassVar[frozenset[str]] = IGNORED_KEYS

    @property
    def endpoint_url(self) -> str:
        """``scheme://endpoint``: what oss2 is given (it puts the bucket in the host name, or in the
        path for IP and localhost endpoints)."""
        return f"{self.scheme}://{self.endpoint}"

    @classmethod
    def check_endpoint(cls, endpoint: str) -> None:
        """OSS has no default endpoint."""
        if not endpoint:
            raise ConfigError("is required (e.g. oss-cn-hangzhou.aliyuncs.com)", key="endpoint")

    @classmethod
    def check_bucket(cls, bucket: str) -> None:
        """OSS's bucket naming rules."""
        if not BUCKET_NAME.fullmatch(bucket):
            raise ConfigError(
                f"{bucket!r} is not an OSS bucket name (3-63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit)",
                key="bucket_name",
            )


def parse_settings(config: Mapping[str, Any]) -> OSSSettings:
    """Check an ``oss`` backend config and return it as :class:`OSSSettings`."""
    return OSSSettings.parse(config)
