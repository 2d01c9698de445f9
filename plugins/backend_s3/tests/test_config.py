"""The s3 backend's config keys: upstream names and defaults, and a ConfigError naming each bad key
(the keys it shares with oss: nydus_testsupport.objstore_suites.ObjectStoreConfigSuite)."""

from __future__ import annotations

import pytest
from nydus_backend_s3.backend import S3Backend
from nydus_testsupport.objstore_suites import ObjectStoreConfigSuite

from nydus_core.errors import ConfigError

BASE = {"endpoint": "127.0.0.1:9000", "bucket_name": "images"}


class TestS3Config(ObjectStoreConfigSuite):
    backend_cls = S3Backend
    base = BASE


def test_defaults_are_upstreams() -> None:
    cfg = S3Backend.validate_config(BASE)
    assert cfg["region"] == "us-east-1"


def test_an_upstream_config_is_accepted_unchanged() -> None:
    upstream = {
        "scheme": "http", "endpoint": "localhost:9000", "region": "us-east-1", "bucket_name": "nydus",
        "object_prefix": "blobs/", "access_key_id": "minio", "access_key_secret": "minio123",
        "skip_verify": True, "timeout": 10, "connect_timeout": 3, "retry_limit": 2,
        "proxy": {"url": "http://127.0.0.1:65001", "ping_url": "http://127.0.0.1:40901/server/ping",
                  "fallback": True, "check_interval": 5, "use_http": False},
    }
    cfg = S3Backend.validate_config(upstream)
    for key, value in upstream.items():
        if key != "proxy":
            assert cfg[key] == value, key
    assert cfg["proxy"]["ping_url"] == upstream["proxy"]["ping_url"]
    backend = S3Backend(cfg)
    assert backend.settings.path_style  # localhost: the bucket goes in the path
    assert backend.settings.endpoint_url == "http://localhost:9000"


def test_aws_needs_a_region_and_uses_virtual_hosts() -> None:
    with pytest.raises(ConfigError) as info:
        S3Backend.validate_config({"bucket_name": "b"})
    assert info.value.key == "region"
    backend = S3Backend({"bucket_name": "b", "region": "eu-west-1"})
    assert backend.settings.endpoint_url is None and not backend.settings.path_style
    assert not S3Backend(dict(BASE, endpoint="s3.example.com")).settings.path_style
