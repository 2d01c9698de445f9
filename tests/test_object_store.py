"""nydus_core.object_store: the shared object-store config, error classification and backend plumbing
(on a small backend whose "bucket" is a dict, so no SDK is needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from nydus_core.errors import (
    AuthError,
    BackendError,
    BlobNotFoundError,
    ConfigError,
    PermissionDeniedError,
    TransientBackendError,
)
from nydus_core.object_store import (
    ErrorCodes,
    ObjectStoreBackend,
    ObjectStoreSettings,
    parse_credentials,
    parse_endpoint,
    parse_scheme,
    unmapped_error,
)
from nydus_core.remote_backend import ExactSizeReader, ProxySettings


@dataclass(frozen=True, kw_only=True)
class DictSettings(ObjectStoreSettings):
    backend: ClassVar[str] = "dict"
    KEYS: ClassVar[frozenset[str]] = frozenset({
        "scheme", "endpoint", "bucket_name", "object_prefix", "access_key_id", "access_key_secret",
        "skip_verify", "ca_cert_files", "timeout", "connect_timeout", "retry_limit", "proxy", "zone",
    })
    zone: str = "z1"

    @classmethod
    def check_bucket(cls, bucket: str) -> None:
        if bucket.upper() == bucket:
            raise ConfigError("must not be upper case", key="bucket_name")

    @classmethod
    def parse_extra(cls, config: Mapping[str, Any], endpoint: str) -> dict[str, Any]:
        return {"zone": config.get("zone", "z1")}


BUCKETS: dict[str, dict[str, bytes]] = {}


class DictBackend(ObjectStoreBackend):
    name = "dict"
    settings_class = DictSettings

    def _handle(self, proxied: bool) -> dict[str, bytes]:
        return BUCKETS.setdefault(self.settings.bucket_name, {})

    def _get_range(self, handle: dict[str, bytes], key: str, offset: int, end: int) -> bytes:
        return handle[key][offset:end + 1]

    def _head_size(self, handle: dict[str, bytes], key: str) -> int:
        return len(handle[key])

    def _upload(self, key: str, source: ExactSizeReader, size: int | None, what: str) -> None:
        def put(handle: dict[str, bytes]) -> None:
            handle[key] = source.read()

        self.call(what, put, via_proxy=False)

    def _is_proxy_failure(self, exc: BaseException) -> bool:
        return False

    def _map_error(self, exc: BaseException, what: str) -> BackendError:
        if isinstance(exc, KeyError):
            return BlobNotFoundError(f"dict backend: {what}: not found")
        return unmapped_error(exc, f"dict backend: {what}", self.secrets())


def test_shared_value_checks() -> None:
    assert parse_scheme({}) == "https" and parse_scheme({"scheme": "HTTP"}) == "http"
    assert parse_endpoint({"endpoint": "h:9000/"}) == "h:9000" and parse_endpoint({}) == ""
    assert parse_credentials({}) == ("", "")
    assert parse_credentials({"access_key_id": "a", "access_key_secret": "b"}) == ("a", "b")
    for call, key in [
        (lambda: parse_scheme({"scheme": "ftp"}), "scheme"),
        (lambda: parse_endpoint({"endpoint": "http://h"}), "endpoint"),
        (lambda: parse_endpoint({"endpoint": "h/p"}), "endpoint"),
        (lambda: parse_credentials({"access_key_id": "a"}), "access_key_secret"),
        (lambda: parse_credentials({"access_key_secret": "b"}), "access_key_id"),
        (lambda: parse_credentials({"access_key_id": "a", "access_key_secret": 3}), "access_key_secret"),
    ]:
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.key == key


def test_settings_parse_defaults_hooks_and_as_dict() -> None:
    s = DictSettings.parse({"bucket_name": "b", "endpoint": "127.0.0.1:1", "zone": "z9"})
    assert s.zone == "z9" and s.scheme == "https" and s.endpoint_url == "https://127.0.0.1:1"
    assert s.location("k") == "dict://b/k"
    assert DictSettings.parse({"bucket_name": "b"}).endpoint_url is None
    d = s.as_dict()
    assert d["ca_cert_files"] == [] and d["proxy"] == ProxySettings().as_dict() and d["zone"] == "z9"
    assert DictSettings.parse(d) == s  # the filled-in config reads back the same
    for config, key in [
        ({}, "bucket_name"),
        ({"bucket_name": "B"}, "bucket_name"),
        ({"bucket_name": "b", "timeout": 0}, "timeout"),
        ({"bucket_name": "b", "retry_limit": 1.5}, "retry_limit"),
        ({"bucket_name": "b", "proxy": {"url": "p:1"}}, "proxy.url"),
        ([], "config"),
    ]:
        with pytest.raises(ConfigError) as info:
            DictSettings.parse(config)
        assert info.value.key == key
    secret = "very-secret-value"
    assert secret not in repr(DictSettings.parse({"bucket_name": "b", "access_key_id": "i",
                                                  "access_key_secret": secret}))


@pytest.mark.parametrize(
    ("code", "status", "kind", "text"),
    [
        ("NoSuchBucket", 404, BlobNotFoundError, "bucket does not exist"),
        ("Gone", 404, BackendError, "Gone"),
        ("", 404, BlobNotFoundError, "not found (404: why)"),
        ("Nope", 400, BlobNotFoundError, "not found (Nope: why)"),
        ("", 401, AuthError, "credentials rejected"),
        ("BadKey", 400, AuthError, "credentials rejected"),
        ("", 403, PermissionDeniedError, "permission denied"),
        ("Slow", 400, TransientBackendError, "server error"),
        ("", 503, TransientBackendError, "server error (503"),
        ("", 429, TransientBackendError, "server error"),
        ("Odd", 400, BackendError, "p: Odd: why"),
    ],
)
def test_error_codes(code: str, status: int, kind: type[Exception], text: str) -> None:
    codes = ErrorCodes(frozenset({"Nope"}), frozenset({"BadKey"}), frozenset({"NoWay"}), frozenset({"Slow"}))
    err = codes.error("p", code, status, "why", ())
    assert type(err) is kind and text in str(err)


def test_error_messages_are_redacted() -> None:
    codes = ErrorCodes(frozenset(), frozenset(), frozenset(), frozenset())
    err = codes.error("p", "X", 400, "key hunter2-secret at http://u:pw@h/", ["hunter2-secret"])
    assert "hunter2-secret" not in str(err) and ":pw@" not in str(err)
    assert unmapped_error(BlobNotFoundError("x"), "p").args == ("x",)
    plain = unmapped_error(ValueError("bad hunter2-secret"), "p", ["hunter2-secret"])
    assert str(plain) == "p: ValueError: bad ***"


def test_backend_plumbing(tmp_path: Path) -> None:
    backend = DictBackend({"bucket_name": "plumbing", "object_prefix": "pre/"})
    blob = "ab" * 32
    backend.write(f"sha256:{blob}", b"0123456789")
    assert BUCKETS["plumbing"] == {f"pre/{blob}": b"0123456789"}
    assert backend.size(blob) == 10 and backend.read(blob, 2, 3) == b"234" and backend.read(blob, 5, 0) == b""
    with pytest.raises(ValueError):
        backend.read(blob, -1, 3)
    with pytest.raises(BlobNotFoundError, match="dict://plumbing/pre/"):
        backend.read("cd" * 32, 0, 1)
    assert not backend.exists("cd" * 32)
    with pytest.raises(BackendError, match="ended after 3 of the declared 5 bytes"):
        backend.write(blob, io.BytesIO(b"abc"), 5)
    assert repr(backend) == "<DictBackend dict://plumbing/pre/ endpoint=default>"
    assert DictBackend.validate_config({"bucket_name": "x"})["zone"] == "z1"


def test_ca_bundle_lifecycle(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pem", tmp_path / "b.pem"
    a.write_text("A\n")
    b.write_text("B\n")
    assert DictBackend({"bucket_name": "x"}).tls_verify() is None
    assert DictBackend({"bucket_name": "x", "ca_cert_files": [str(a)]}).tls_verify() == str(a)
    skip = DictBackend({"bucket_name": "x", "ca_cert_files": [str(a)], "skip_verify": True})
    assert skip.tls_verify() is False
    backend = DictBackend({"bucket_name": "x", "ca_cert_files": [str(a), str(b)]})
    bundle = backend.tls_verify()
    assert isinstance(bundle, str) and backend.tls_verify() == bundle
    assert Path(bundle).read_text() == "A\nB\n"
    backend.close()
    assert not Path(bundle).exists()
