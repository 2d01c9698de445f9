"""Dragonfly proxy: reads go through it while it is healthy, fall back when it is down, return
when it recovers (a forwarding proxy of the test's own, stopped and started)."""

from __future__ import annotations

import pytest
from nydus_backend_registry.backend import RegistryBackend
from nydus_testkit.samples import blob_id_of, random_bytes
from nydus_testkit.servers import wait_until
from nydus_testsupport.registry import ForwardingProxy, RegistryFlavour

from nydus_core.errors import TransientBackendError

REPO = "dragonfly/test"


@pytest.fixture
def blob(registry_token: RegistryFlavour) -> tuple[str, bytes]:
    data = random_bytes(100_000, seed=70)
    with registry_token.client() as client:
        client.push_blob(REPO, data)
    return blob_id_of(data), data


def _config(flavour: RegistryFlavour, proxy: ForwardingProxy, **proxy_extra) -> dict:
    block = {"url": proxy.url, "ping_url": proxy.ping_url, "check_interval": 0.2, "fallback": True}
    block.update(proxy_extra)
    return flavour.backend_config(REPO, proxy=block)


def _via_proxy(proxy: ForwardingProxy, blob_id: str) -> int:
    return sum(1 for m, url in proxy.requests if m == "GET" and blob_id in url)


def test_proxy_used_then_fallback_then_back(registry_token: RegistryFlavour, registry_factory, blob) -> None:
    blob_id, data = blob
    proxy = registry_factory.forwarding_proxy()
    backend = RegistryBackend(_config(registry_token, proxy))
    try:
        assert backend.read(blob_id, 0, 1000) == data[:1000]
        through = _via_proxy(proxy, blob_id)
        assert through >= 1  # (the first one may be the 401 that starts the token flow)

        proxy.stop()
        for off in range(1000, 6000, 1000):  # the registry answers directly, nothing fails
            assert backend.read(blob_id, off, 1000) == data[off:off + 1000]
        assert _via_proxy(proxy, blob_id) == through
        assert backend.transport.proxy_health is not None and not backend.transport.proxy_health.healthy

        proxy.start()  # same port
        wait_until(lambda: backend.transport.proxy_health.healthy, 3, message="proxy healthy again")
        assert backend.read(blob_id, 6000, 1000) == data[6000:7000]
        assert _via_proxy(proxy, blob_id) == through + 1
        assert proxy.pings >= 1
    finally:
        backend.close()


def test_proxy_down_at_start_uses_registry(registry_token: RegistryFlavour, registry_factory, blob) -> None:
    blob_id, data = blob
    proxy = registry_factory.forwarding_proxy()
    proxy.stop()
    backend = RegistryBackend(_config(registry_token, proxy))
    try:
        assert backend.read(blob_id, 0, 100) == data[:100]
    finally:
        backend.close()
    assert _via_proxy(proxy, blob_id) == 0


def test_no_fallback_fails_naming_the_proxy(registry_token: RegistryFlavour, registry_factory, blob) -> None:
    blob_id, data = blob
    proxy = registry_factory.forwarding_proxy()
    # no ping_url: the health check is a TCP connect to the proxy
    backend = RegistryBackend(_config(registry_token, proxy, fallback=False, ping_url=""))
    try:
        assert backend.read(blob_id, 0, 100) == data[:100]
        proxy.stop()
        with pytest.raises(TransientBackendError) as info:
            backend.read(blob_id, 100, 100)
        assert "Dragonfly proxy" in str(info.value) and proxy.url in str(info.value)
    finally:
        backend.close()


def test_use_http_rewrites_https_for_the_proxy(registry_open: RegistryFlavour, registry_factory) -> None:
    """``use_http``: an https registry URL is sent to the proxy as http (it can then cache it)."""
    data = random_bytes(5000, seed=71)
    with registry_open.client() as client:
        client.push_blob(REPO, data)
    blob_id = blob_id_of(data)
    proxy = registry_factory.forwarding_proxy()
    cfg = registry_open.backend_config(REPO, scheme="https", proxy={
        "url": proxy.url, "ping_url": proxy.ping_url, "use_http": True, "fallback": False})
    backend = RegistryBackend(cfg)
    try:
        assert backend.read(blob_id, 10, 100) == data[10:110]
    finally:
        backend.close()
    urls = [u for m, u in proxy.requests if blob_id in u]
    assert urls and all(u.startswith(f"http://{registry_open.server.host}/") for u in urls)


def test_proxy_credentials_not_in_errors(registry_token: RegistryFlavour, registry_factory, blob) -> None:
    blob_id, _ = blob
    proxy = registry_factory.forwarding_proxy()
    proxy.stop()
    url = proxy.url.replace("http://", "http://puser:pr0xy-s3cret@")
    backend = RegistryBackend(registry_token.backend_config(REPO, proxy={"url": url, "fallback": False}))
    try:
        with pytest.raises(TransientBackendError) as info:
            backend.read(blob_id, 0, 10)
    finally:
        backend.close()
    assert "pr0xy-s3cret" not in str(info.value)
