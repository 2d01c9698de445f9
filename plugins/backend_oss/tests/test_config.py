"""The oss backend's config keys: upstream names and defaults, and a ConfigError naming each bad key."""

from __future__ import annotations

from typing import Any

import pytest
from nydus_backend_oss.backend import OSSBackend
from nydus_backend_oss.sdk import import_oss2

from nydus_core.errors import ConfigError

BASE = {"endpoint": "oss-cn-hangzhou.aliyuncs.com", "bucket_name": "images"}


def test_defaults_are_upstreams() -> None:
    cfg = OSSBackend.validate_config(BASE)
    assert cfg["scheme"] == "https"
    assert cfg["object_prefix"] == ""
    assert cfg["timeout"] == 5 and cfg["connect_timeout"] == 5 and cfg["retry_limit"] == 0
    assert cfg["skip_verify"] is False and cfg["ca_cert_files"] == []
    assert cfg["proxy"]["url"] == "" and cfg["proxy"]["fallback"] is True
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
        ({"endpoint": "https://oss-cn-hangzhou.aliyuncs.com"}, "endpoint"),
        ({"bucket_name": ""}, "bucket_name"),
        ({"bucket_name": "b"}, "bucket_name"),
        ({"bucket_name": "Images"}, "bucket_name"),
        ({"bucket_name": "a/b"}, "bucket_name"),
        ({"scheme": "s3"}, "scheme"),
        ({"timeout": None}, "timeout"),
        ({"retry_limit": "3"}, "retry_limit"),
        ({"skip_verify": 1}, "skip_verify"),
        ({"ca_cert_files": ["/nonexistent.pem"]}, "ca_cert_files"),
        ({"access_key_id": "id-only"}, "access_key_secret"),
        ({"proxy": {"url": "ftp://x"}}, "proxy.url"),
    ],
)
def test_bad_values_name_their_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        OSSBackend.validate_config({**BASE, **change})
    assert info.value.key == key
    assert key in str(info.value)


def test_secret_never_in_repr() -> None:
    secret = "Q0YehC6ZyugWfjod5y8Rcqrc1yEXAMPLE"
    backend = OSSBackend({**BASE, "access_key_id": "LTAI4Fix", "access_key_secret": secret})
    assert secret not in repr(backend) and secret not in repr(backend.settings)


def test_without_keys_requests_are_anonymous() -> None:
    oss2 = import_oss2()
    assert isinstance(OSSBackend(BASE).make_auth(), oss2.AnonymousAuth)
    assert type(OSSBackend({**BASE, "access_key_id": "a", "access_key_secret": "b"}).make_auth()) is oss2.Auth
