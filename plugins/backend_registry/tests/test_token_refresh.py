"""Tokens that expire during a long multi-chunk read: refreshed ahead of time, or on a 401."""

from __future__ import annotations

import time

import pytest
from nydus_backend_registry.backend import RegistryBackend
from nydus_testkit.samples import blob_id_of, random_bytes
from nydus_testsupport.registry import RegistryFlavour

REPO = "refresh/test"
CHUNK = 64 * 1024


@pytest.fixture
def blob(registry_token: RegistryFlavour) -> tuple[str, bytes]:
    data = random_bytes(16 * CHUNK, seed=40)
    with registry_token.client() as client:
        client.push_blob(REPO, data)
    return blob_id_of(data), data


@pytest.fixture
def short_tokens(registry_token: RegistryFlavour):
    issuer = registry_token.issuer
    assert issuer is not None
    saved = issuer.lifetime, issuer.reported_expires_in
    yield issuer
    issuer.lifetime, issuer.reported_expires_in = saved


def _read_in_chunks(backend: RegistryBackend, blob_id: str, data: bytes, seconds: float) -> bytes:
    """Read the blob chunk by chunk, spread over ``seconds`` (a slow lazy reader)."""
    n = len(data) // CHUNK
    out = []
    for i in range(n):
        out.append(backend.read(blob_id, i * CHUNK, CHUNK))
        time.sleep(seconds / n)
    return b"".join(out)


def test_token_refreshed_before_expiry(registry_token: RegistryFlavour, blob, short_tokens) -> None:
    """An honest 2 s token is replaced before it runs out: no request is ever refused."""
    blob_id, data = blob
    short_tokens.lifetime = 2
    short_tokens.reported_expires_in = None
    backend = RegistryBackend(registry_token.backend_config(REPO))
    try:
        assert _read_in_chunks(backend, blob_id, data, 4.0) == data
        assert backend.transport.auth.tokens_fetched >= 2
    finally:
        backend.close()


def test_token_dying_mid_read_is_refreshed_on_401(registry_token: RegistryFlavour, blob,
                                                  short_tokens) -> None:
    """The issuer claims 300 s but the token dies after 1.5 s: the 401 mid-read fetches a new one."""
    blob_id, data = blob
    short_tokens.lifetime = 1.5
    short_tokens.reported_expires_in = 300
    backend = RegistryBackend(registry_token.backend_config(REPO))
    try:
        assert _read_in_chunks(backend, blob_id, data, 3.5) == data
        # the proactive refresh would not have happened for ~240 s: these came from 401 answers
        assert backend.transport.auth.tokens_fetched >= 2
    finally:
        backend.close()
