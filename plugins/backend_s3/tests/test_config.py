"""The s3 backend's config keys: upstream names and defaults, and a ConfigError naming each bad key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nydus_backend_s3.backend import S3Backend

from nydus_core.errors import ConfigError

BASE = {"endpoint": "127.0.0.1:9000", "bucket_name": "images"}


def test_defaults_are_upstreams() -> None:
    cfg = S3Backend.validate_config(BASE)
    assert cfg["scheme"] == "https"
    assert cfg["region"] == "us-east-1"
    assert cfg["object_prefix"] == ""
    assert cfg["timeout"] == 5 and cfg["connect_timeout"] == 5 and cfg["retry_limit"] == 0
    assert cfg["skip_verify"] is False and cfg["ca_cert_files"] == []
    assert cfg["proxy"] == {
        "url": "", "ping_url": "", "fallback": True, "check_interval": 5, "use_http": False,
        "check_pause_elapsed": 300,
    }


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


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"bucket_name": ""}, "bucket_name"),
        ({"bucket_name": None}, "bucket_name"),
        ({"bucket_name": "a/b"}, "bucket_name"),
        ({"endpoint": "https://s3.example.com"}, "endpoint"),
        ({"endpoint": "s3.example.com/path"}, "endpoint"),
        ({"endpoint": 9000}, "endpoint"),
        ({"scheme": "ftp"}, "scheme"),
        ({"timeout": "5"}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"retry_limit": 1.5}, "retry_limit"),
        ({"retry_limit": -1}, "retry_limit"),
        ({"skip_verify": "yes"}, "skip_verify"),
        ({"ca_cert_files": ["/nonexistent/ca.pem"]}, "ca_cert_files"),
        ({"ca_cert_files": 3}, "ca_cert_files"),
        ({"access_key_id": "id-only"}, "access_key_secret"),
        ({"access_key_secret": "secret-only"}, "access_key_id"),
        ({"proxy": "http://proxy"}, "proxy"),
        ({"proxy": {"url": "proxy:65001"}}, "proxy.url"),
        ({"proxy": {"url": "http://p:1", "fallback": "no"}}, "proxy.fallback"),
        ({"proxy": {"url": "http://p:1", "check_interval": "5s"}}, "proxy.check_interval"),
        ({"proxy": {"dragonfly_scheduler_endpoint": "http://s:8002"}}, "proxy.dragonfly_scheduler_endpoint"),
    ],
)
def test_bad_values_name_their_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        S3Backend.validate_config({**BASE, **change})
    assert info.value.key == key
    assert key in str(info.value)


def test_secret_never_in_config_errors_or_repr() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(ConfigError) as info:
        S3Backend.validate_config({**BASE, "access_key_secret": secret, "timeout": "x"})
    assert secret not in str(info.value)
    backend = S3Backend({**BASE, "access_key_id": "AKIDEXAMPLE", "access_key_secret": secret})
    assert secret not in repr(backend) and secret not in repr(backend.settings)


def test_ca_cert_files_are_checked_and_merged(tmp_path: Path) -> None:
    first, second = tmp_path / "a.pem", tmp_path / "b.pem"
    first.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    second.write_text("-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----")
    backend = S3Backend({**BASE, "ca_cert_files": [str(first), str(second)]})
    bundle = backend._verify()
    assert isinstance(bundle, str)
    text = Path(bundle).read_text()
    assert "AAAA" in text and "BBBB" in text
    backend.close()
    assert not Path(bundle).exists()
    assert S3Backend({**BASE, "ca_cert_files": [str(first)], "skip_verify": True})._verify() is False


def test_unknown_keys_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    S3Backend.validate_config({**BASE, "bukcet": "typo", "meta_prefix": "meta/"})
    assert "bukcet" in caplog.text
    assert "meta_prefix" not in caplog.text  # nydusify's key, accepted silently
