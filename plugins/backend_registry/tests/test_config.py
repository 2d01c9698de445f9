"""The registry backend's config keys: upstream names, defaults, errors naming the key, no secrets."""

from __future__ import annotations

import base64

import pytest
from nydus_backend_registry.backend import RegistryBackend
from nydus_backend_registry.config import AUTH_ENV, Credentials, RegistryConfig, validate_config

from nydus_core.errors import ConfigError

BASE = {"host": "registry.example.com:5000", "repo": "library/busybox"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_defaults_are_upstreams() -> None:
    cfg = validate_config(BASE)
    assert cfg["scheme"] == "https"
    assert cfg["timeout"] == 5 and cfg["connect_timeout"] == 5 and cfg["retry_limit"] == 0
    assert cfg["skip_verify"] is False and cfg["ca_cert_files"] == []
    assert cfg["proxy"] == {"url": "", "ping_url": "", "fallback": True, "check_interval": 5,
                            "use_http": False, "check_pause_elapsed": 300}
    assert RegistryBackend.validate_config(BASE) == cfg


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"host": ""}, "host"),
        ({"host": "https://registry.example.com"}, "host"),
        ({"host": "registry.example.com/v2"}, "host"),
        ({"repo": ""}, "repo"),
        ({"repo": "Library/Busybox"}, "repo"),
        ({"scheme": "ftp"}, "scheme"),
        ({"timeout": "5"}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"retry_limit": 1.5}, "retry_limit"),
        ({"retry_limit": True}, "retry_limit"),
        ({"skip_verify": "yes"}, "skip_verify"),
        ({"ca_cert_files": ["/nonexistent/ca.pem"]}, "ca_cert_files"),
        ({"auth": "%%%not-base64"}, "auth"),
        ({"auth": b64("no-colon")}, "auth"),
        ({"blob_url_scheme": "gopher"}, "blob_url_scheme"),
        ({"blob_redirected_host": "http://x/y"}, "blob_redirected_host"),
        ({"proxy": {"url": "dfdaemon:65001"}}, "proxy.url"),
        ({"proxy": {"url": "http://p:1", "check_interval": 0}}, "proxy.check_interval"),
        ({"proxy": {"fallback": "true"}}, "proxy.fallback"),
        ({"proxy": {"dragonfly_scheduler_endpoint": "http://s:1"}}, "proxy.dragonfly_scheduler_endpoint"),
        ({"mirrors": [{"host": "m"}]}, "mirrors"),
    ],
)
def test_bad_values_name_the_key(change: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({**BASE, **change})
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_auth_errors_never_quote_the_value() -> None:
    secret = "hunter2-very-secret"
    with pytest.raises(ConfigError) as info:
        validate_config({**BASE, "auth": secret + "%%"})
    assert secret not in str(info.value)
    bad = b64("userwithoutcolon" + secret)
    with pytest.raises(ConfigError) as info:
        validate_config({**BASE, "auth": bad})
    assert secret not in str(info.value) and bad not in str(info.value)


def test_unknown_keys_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    cfg = validate_config({**BASE, "readahead": True})
    assert "readahead" not in cfg
    assert "readahead" in caplog.text


def test_image_pull_auth_overrides_auth() -> None:
    cfg = RegistryConfig.from_mapping({**BASE, "auth": b64("cfg-user:cfg-pass")},
                                      environ={AUTH_ENV: b64("env-user:env:pass")})
    assert cfg.credentials == Credentials("env-user", "env:pass")
    cfg = RegistryConfig.from_mapping({**BASE, "auth": b64("cfg-user:cfg-pass")}, environ={})
    assert cfg.credentials == Credentials("cfg-user", "cfg-pass")
    with pytest.raises(ConfigError, match=AUTH_ENV):
        RegistryConfig.from_mapping(BASE, environ={AUTH_ENV: "@@@"})


def test_repr_hides_secrets() -> None:
    cfg = RegistryConfig.from_mapping({**BASE, "auth": b64("user:pa55word"), "registry_token": "tok-123456"},
                                      environ={})
    text = repr(cfg) + repr(cfg.credentials)
    assert "pa55word" not in text and "tok-123456" not in text and b64("user:pa55word") not in text
    backend = RegistryBackend({**BASE, "auth": b64("user:pa55word")})
    try:
        assert "pa55word" not in repr(backend)
    finally:
        backend.close()


def test_float_timeouts_and_string_ca_file(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = validate_config({**BASE, "timeout": 0.5, "ca_cert_files": str(ca)})
    assert cfg["timeout"] == 0.5 and cfg["ca_cert_files"] == [str(ca)]
