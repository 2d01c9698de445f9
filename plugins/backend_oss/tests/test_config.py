"""The oss backend's config keys: upstream names and defaults, and a ConfigError naming each bad key
(the keys it shares with s3: nydus_testsupport.objstore_suites.ObjectStoreConfigSuite)."""

from __future__ import annotations

from typing import Any

import pytest
from nydus_backend_oss.backend import OSSBackend
from nydus_backend_oss.sdk import import_oss2
from nydus_testsupport.objstore_suites import ObjectStoreConfigSuite

from nydus_core.errors import ConfigError

BASE = {"endpoint": "oss-cn-hangzhou.aliyuncs.com", "bucket_name": "images"}


class TestOSSConfig(ObjectStoreConfigSuite):
    backend_cls = OSSBackend
    base = BASE


def test_defaults_are_upstreams() -> None:
    cfg = OSSBackend.validate_config(BASE)
    assert OSSBackend(cfg).settings.endpoint_url == "https://oss-cn-hangzhou.aliyuncs.com"


def test_an_upstream_config_is_accepted_unchanged() -> None:
    upstream = {
        "scheme": "http", "endpoint": "oss-cn-hangzhou.aliyuncs.com", "bucket_name": "nydus",
        "object_prefix": "blobs/", "access_key_id": "LTAI5tExample", "access_key_secret": "secretExample",
        "skip_verify": False, "timeout": 10, "connect_timeout": 3, "retry_limit": 2,
        "proxy": {"url": "http://127.0.0.1:65001", "fallback": True, "check_interval": 5},
    }
    cfg = OSSBackend.validate_config(upstream)
    for key, value in upstream.items():
        if key != "proxy":
            assert cfg[key] == value, key


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"endpoint": ""}, "endpoint"),
        ({"bucket_name": "b"}, "bucket_name"),
        ({"bucket_name": "Images"}, "bucket_name"),
    ],
)
def test_bad_oss_values_name_their_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        OSSBackend.validate_config({**BASE, **change})
    assert info.value.key == key
    assert key in str(info.value)


def test_without_keys_requests_are_anonymous() -> None:
    oss2 = import_oss2()
    assert isinstance(OSSBackend(BASE).make_auth(), oss2.AnonymousAuth)
    assert type(OSSBackend({**BASE, "access_key_id": "a", "access_key_secret": "b"}).make_auth()) is oss2.Auth
