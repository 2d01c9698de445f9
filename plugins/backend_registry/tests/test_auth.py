"""Authentication against real registries: Basic (htpasswd), token (our issuer), static tokens.

Also: credentials never reach error messages or logs.
"""

from __future__ import annotations

import logging
import os

import pytest
from nydus_backend_registry.auth import CLIENT_ID
from nydus_backend_registry.backend import RegistryBackend
from nydus_backend_registry.config import AUTH_ENV
from nydus_testkit.samples import blob_id_of, random_bytes
from nydus_testsupport.registry import READONLY_USER, RegistryFlavour, basic_auth

from nydus_core.errors import AuthError, PermissionDeniedError

REPO = "auth/test"


@pytest.fixture
def pushed(request: pytest.FixtureRequest) -> tuple[RegistryFlavour, str, bytes]:
    flavour: RegistryFlavour = request.getfixturevalue(request.param)
    data = random_bytes(300_000, seed=hash(request.param) % 1000)
    with flavour.client() as client:
        client.push_blob(REPO, data)
    return flavour, blob_id_of(data), data


def _backend(flavour: RegistryFlavour, **extra) -> RegistryBackend:
    return RegistryBackend(flavour.backend_config(REPO, **extra))


@pytest.mark.parametrize("pushed", ["registry_basic", "registry_token"], indirect=True)
def test_reads_with_credentials(pushed) -> None:
    flavour, blob_id, data = pushed
    backend = _backend(flavour)
    try:
        assert backend.size(blob_id) == len(data)
        assert backend.read(blob_id, 1000, 5000) == data[1000:6000]
    finally:
        backend.close()


@pytest.mark.parametrize("pushed", ["registry_basic", "registry_token"], indirect=True)
def test_no_credentials_is_an_auth_error(pushed) -> None:
    flavour, blob_id, _ = pushed
    backend = _backend(flavour, auth="")
    try:
        with pytest.raises(AuthError) as info:
            backend.read(blob_id, 0, 10)
        msg = str(info.value)
        assert flavour.server.host in msg and blob_id in msg
        assert "no credentials" in msg or "credentials required" in msg or "HTTP 401" in msg
    finally:
        backend.close()


@pytest.mark.parametrize("pushed", ["registry_basic", "registry_token"], indirect=True)
def test_wrong_password_is_an_auth_error_without_secrets(pushed, caplog: pytest.LogCaptureFixture) -> None:
    flavour, blob_id, _ = pushed
    wrong_pw = "Wr0ng-" + flavour.password[::-1]
    user = "alice" if flavour.name == "basic" else "bob"
    wrong = basic_auth(user, wrong_pw)
    caplog.set_level(logging.DEBUG)
    backend = _backend(flavour, auth=wrong)
    try:
        with pytest.raises(AuthError) as info:
            backend.size(blob_id)
    finally:
        backend.close()
    text = str(info.value) + caplog.text
    for secret in (wrong_pw, wrong, flavour.password, flavour.auth):
        assert secret not in text
    assert "401" in str(info.value)


@pytest.mark.parametrize("pushed", ["registry_basic"], indirect=True)
def test_image_pull_auth_env_overrides_config(pushed, monkeypatch: pytest.MonkeyPatch) -> None:
    flavour, blob_id, data = pushed
    monkeypatch.setenv(AUTH_ENV, flavour.auth)
    backend = _backend(flavour, auth=basic_auth("alice", "definitely-wrong"))
    try:
        assert backend.read(blob_id, 0, 100) == data[:100]
    finally:
        backend.close()
    monkeypatch.setenv(AUTH_ENV, basic_auth("alice", "definitely-wrong"))
    backend = _backend(flavour)
    try:
        with pytest.raises(AuthError):
            backend.read(blob_id, 0, 100)
    finally:
        backend.close()


@pytest.mark.parametrize("pushed", ["registry_token"], indirect=True)
def test_token_flow_details(pushed) -> None:
    """Token requests carry service, scope and our client id; one token serves many reads."""
    flavour, blob_id, data = pushed
    issuer = flavour.issuer
    assert issuer is not None
    before = len(issuer.requests)
    backend = _backend(flavour)
    try:
        for off in range(0, 200_000, 20_000):
            assert backend.read(blob_id, off, 1000) == data[off:off + 1000]
        assert backend.transport.auth.tokens_fetched == 1
    finally:
        backend.close()
    new = issuer.requests[before:]
    assert len(new) == 1
    assert new[0]["client_id"] == CLIENT_ID
    assert new[0]["service"] == issuer.service
    assert new[0]["scope"] == [f"repository:{REPO}:pull"]
    assert new[0]["user"] == "bob" and new[0]["status"] == 200


@pytest.mark.parametrize("pushed", ["registry_token"], indirect=True)
def test_read_only_user_cannot_push(pushed) -> None:
    flavour, blob_id, data = pushed
    reader = basic_auth(READONLY_USER, flavour.password)
    backend = _backend(flavour, auth=reader)
    try:
        assert backend.read(blob_id, 0, 10) == data[:10]  # pull is allowed
        other = random_bytes(1000, seed=5)
        import io

        with pytest.raises(PermissionDeniedError) as info:
            backend.write(blob_id_of(other), io.BytesIO(other))
        assert "insufficient_scope" in str(info.value)
    finally:
        backend.close()


@pytest.mark.parametrize("pushed", ["registry_token"], indirect=True)
def test_static_registry_token(pushed) -> None:
    """``registry_token`` is sent as a bearer token; with no credentials a dead one is an AuthError."""
    flavour, blob_id, data = pushed
    issuer = flavour.issuer
    assert issuer is not None
    token, _ = issuer.issue("bob", [f"repository:{REPO}:pull"])
    backend = _backend(flavour, auth="", registry_token=token)
    try:
        assert backend.read(blob_id, 5, 10) == data[5:15]
        assert backend.transport.auth.tokens_fetched == 0
    finally:
        backend.close()
    backend = _backend(flavour, auth="", registry_token="not-a-valid-token-xyz")
    try:
        with pytest.raises(AuthError) as info:
            backend.read(blob_id, 5, 10)
        assert "not-a-valid-token-xyz" not in str(info.value)
    finally:
        backend.close()


@pytest.mark.parametrize("pushed", ["registry_token"], indirect=True)
def test_hot_reload_of_auth(pushed) -> None:
    flavour, blob_id, data = pushed
    backend = _backend(flavour, auth="")
    try:
        with pytest.raises(AuthError):
            backend.read(blob_id, 0, 10)
        backend.update_auth(flavour.auth)
        assert backend.read(blob_id, 0, 10) == data[:10]
    finally:
        backend.close()


@pytest.mark.parametrize("pushed", ["registry_basic", "registry_token"], indirect=True)
def test_secrets_never_logged_on_success(pushed, caplog: pytest.LogCaptureFixture) -> None:
    flavour, blob_id, _ = pushed
    caplog.set_level(logging.DEBUG)
    backend = _backend(flavour)
    try:
        backend.read(blob_id, 0, 100)
        tokens = [t.value for t in backend.transport.auth._tokens.values()]
    finally:
        backend.close()
    assert "GET" in caplog.text  # debug logging was on
    for secret in (flavour.password, flavour.auth, *tokens):
        assert secret not in caplog.text
    assert os.environ.get(AUTH_ENV) is None
