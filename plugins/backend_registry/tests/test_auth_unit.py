"""WWW-Authenticate parsing, token refresh timing and redaction (no server needed)."""

from __future__ import annotations

import random

import pytest
from nydus_backend_registry.auth import parse_www_authenticate, refresh_time
from nydus_backend_registry.backend import redirect_expiry


def test_parse_bearer_challenge() -> None:
    (ch,) = parse_www_authenticate(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:samalba/my-app:pull,push repository:other:pull",error="insufficient_scope"')
    assert ch.scheme == "bearer"
    assert ch.params["realm"] == "https://auth.example.com/token"
    assert ch.params["service"] == "registry.example.com"
    assert ch.scopes == ("repository:samalba/my-app:pull,push", "repository:other:pull")
    assert ch.params["error"] == "insufficient_scope"


def test_parse_basic_and_multiple() -> None:
    chs = parse_www_authenticate('Basic realm="Registry Realm", Bearer realm=http://t/token,service=s')
    assert [c.scheme for c in chs] == ["basic", "bearer"]
    assert chs[0].params == {"realm": "Registry Realm"}
    assert chs[1].params == {"realm": "http://t/token", "service": "s"}
    assert parse_www_authenticate('Bearer realm="a\\"b"')[0].params["realm"] == 'a"b'
    assert parse_www_authenticate("") == []


@pytest.mark.parametrize("expires_in", [2, 60, 300, 3600])
def test_refresh_before_expiry_with_jitter(expires_in: int) -> None:
    rng = random.Random(1)
    times = {refresh_time(100.0, expires_in, rng) for _ in range(50)}
    assert len(times) > 1  # jitter
    for t in times:
        assert 100.0 + expires_in * 0.5 <= t < 100.0 + expires_in
        assert 100.0 + expires_in - t <= 60.0


def test_redirect_expiry_from_signature_params() -> None:
    now_wall, now_mono = 1_700_000_000.0, 50.0
    oss = f"https://b.oss.example.com/x?Expires={int(now_wall) + 65}&Signature=s"
    assert redirect_expiry(oss, now_wall, now_mono) == pytest.approx(now_mono + 60)
    s3 = "https://s3.example.com/x?X-Amz-Date=20231114T221320Z&X-Amz-Expires=120&X-Amz-Signature=s"
    # 20231114T221320Z == 1700000000
    assert redirect_expiry(s3, now_wall, now_mono) == pytest.approx(now_mono + 115)
    assert redirect_expiry("https://cdn.example.com/x", now_wall, now_mono) == pytest.approx(now_mono + 295)
    expired = f"https://b.oss.example.com/x?Expires={int(now_wall) - 10}"
    assert redirect_expiry(expired, now_wall, now_mono) == now_mono
