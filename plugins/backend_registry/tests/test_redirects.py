"""Blob redirects (307 to object storage): followed without our credentials, cached per blob,
dropped when they expire or fail; ``blob_redirected_host`` / ``blob_url_scheme`` rewrite them."""

from __future__ import annotations

import time

import pytest
from nydus_backend_registry.auth import basic_header
from nydus_backend_registry.backend import RegistryBackend
from nydus_backend_registry.config import Credentials
from nydus_testkit.samples import blob_id_of, random_bytes
from nydus_testsupport.registry import BASIC_USER, FaultProxy, RegistryFlavour

from nydus_core.errors import PermissionDeniedError

REPO = "redirect/test"


@pytest.fixture
def setup(registry_basic: RegistryFlavour, registry_factory) -> tuple[FaultProxy, str, bytes, dict]:
    data = random_bytes(200_000, seed=60)
    with registry_basic.client() as client:
        client.push_blob(REPO, data)
    store_auth = basic_header(Credentials(BASIC_USER, registry_basic.password))
    proxy = registry_factory.fault_proxy(registry_basic.server.url, storage_auth=store_auth)
    proxy.redirect_blobs = True
    cfg = {"scheme": "http", "host": proxy.host, "repo": REPO, "auth": registry_basic.auth,
           "timeout": 2, "connect_timeout": 1, "retry_limit": 1}
    return proxy, blob_id_of(data), data, cfg


def _registry_gets(proxy: FaultProxy) -> int:
    return sum(1 for m, p, _ in proxy.requests if m == "GET" and p.startswith("/v2/") and "/blobs/" in p)


def _storage_gets(proxy: FaultProxy) -> int:
    return sum(1 for m, p, _ in proxy.requests if m == "GET" and p.startswith("/_storage/"))


def test_redirect_followed_and_cached(setup) -> None:
    proxy, blob_id, data, cfg = setup
    backend = RegistryBackend(cfg)
    try:
        for off in (0, 50_000, 100_000, 150_000):
            assert backend.read(blob_id, off, 10_000) == data[off:off + 10_000]
        assert backend.redirect_hits == 3
    finally:
        backend.close()
    assert _registry_gets(proxy) == 1
    assert _storage_gets(proxy) == 4
    assert proxy.storage_saw_authorization is False


def test_failed_redirect_is_dropped_and_asked_again(setup) -> None:
    proxy, blob_id, data, cfg = setup
    backend = RegistryBackend(cfg)
    try:
        assert backend.read(blob_id, 0, 100) == data[:100]
        proxy.storage_denied = True  # the signed URL has "expired"
        with pytest.raises(PermissionDeniedError) as info:
            backend.read(blob_id, 100, 100)
        assert "redirected" in str(info.value) and "s3cr3tsig" not in str(info.value)
        proxy.storage_denied = False
        assert backend.read(blob_id, 200, 100) == data[200:300]
    finally:
        backend.close()
    # the cached URL failed, the registry was asked again (and again after the error)
    assert _registry_gets(proxy) == 3


def test_redirect_expiry_from_url(setup) -> None:
    proxy, blob_id, data, cfg = setup
    proxy.redirect_expires_in = 8  # whole seconds; reused until 5 s before expiry: 2-3 s from now
    backend = RegistryBackend(cfg)
    try:
        assert backend.read(blob_id, 0, 100) == data[:100]
        assert backend.read(blob_id, 100, 100) == data[100:200]
        assert _registry_gets(proxy) == 1
        time.sleep(3.1)
        assert backend.read(blob_id, 200, 100) == data[200:300]
    finally:
        backend.close()
    assert _registry_gets(proxy) == 2


def test_blob_redirected_host_rewrites_location(setup) -> None:
    proxy, blob_id, data, cfg = setup
    proxy.redirect_base = "https://storage.invalid:9"  # not reachable: must be rewritten
    backend = RegistryBackend({**cfg, "blob_redirected_host": proxy.host, "blob_url_scheme": "http"})
    try:
        assert backend.read(blob_id, 10, 100) == data[10:110]
    finally:
        backend.close()
    assert _storage_gets(proxy) == 1
