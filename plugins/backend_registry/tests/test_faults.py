"""Retries, resets, 4xx, down and hung registries (a fault-injecting proxy in front of a real one)."""

from __future__ import annotations

import time

import pytest
from nydus_backend_registry.backend import RegistryBackend
from nydus_testkit.samples import blob_id_of, random_bytes
from nydus_testkit.servers import BlackholeServer, free_port
from nydus_testsupport.registry import FaultProxy, RegistryFlavour

from nydus_core.errors import BackendError, BlobNotFoundError, PermissionDeniedError, TransientBackendError

REPO = "faults/test"


@pytest.fixture
def blob(registry_open: RegistryFlavour) -> tuple[str, bytes]:
    data = random_bytes(500_000, seed=50)
    with registry_open.client() as client:
        client.push_blob(REPO, data)
    return blob_id_of(data), data


@pytest.fixture
def proxy(registry_open: RegistryFlavour, registry_factory) -> FaultProxy:
    return registry_factory.fault_proxy(registry_open.server.url)


def _backend(host: str, **extra) -> RegistryBackend:
    cfg = {"scheme": "http", "host": host, "repo": REPO, "timeout": 2, "connect_timeout": 1, "retry_limit": 3}
    cfg.update(extra)
    return RegistryBackend(cfg)


def _blob_gets(proxy: FaultProxy) -> int:
    return sum(1 for m, p, _ in proxy.requests if m == "GET" and "/blobs/" in p)


def test_503_burst_is_retried(proxy: FaultProxy, blob) -> None:
    blob_id, data = blob
    proxy.fail_next(3, 503)
    backend = _backend(proxy.host)
    try:
        assert backend.read(blob_id, 100, 1000) == data[100:1100]
    finally:
        backend.close()
    assert proxy.count("status") == 3
    assert _blob_gets(proxy) == 4


def test_503_beyond_retry_limit_fails_naming_the_kind(proxy: FaultProxy, blob) -> None:
    blob_id, _ = blob
    proxy.fail_next(10, 503)
    backend = _backend(proxy.host, retry_limit=2)
    try:
        with pytest.raises(TransientBackendError) as info:
            backend.read(blob_id, 0, 10)
    finally:
        backend.close()
    msg = str(info.value)
    assert "HTTP 503" in msg and "transient" in msg and blob_id in msg and "2 retries" in msg
    assert _blob_gets(proxy) == 3


def test_connection_resets_are_retried(proxy: FaultProxy, blob) -> None:
    blob_id, data = blob
    proxy.reset_next(2, match=lambda m, p: "/blobs/" in p)
    backend = _backend(proxy.host)
    try:
        assert backend.size(blob_id) == len(data)
        assert backend.read(blob_id, 0, 300_000) == data[:300_000]
    finally:
        backend.close()
    assert proxy.count("reset") == 2


def test_truncated_body_is_retried(proxy: FaultProxy, blob) -> None:
    blob_id, data = blob
    proxy.truncate_next(2, match=lambda m, p: m == "GET" and "/blobs/" in p)
    backend = _backend(proxy.host)
    try:
        assert backend.read(blob_id, 1000, 400_000) == data[1000:401_000]
    finally:
        backend.close()
    assert proxy.count("truncate") == 2


def test_truncated_bodies_beyond_retry_limit_fail(proxy: FaultProxy, blob) -> None:
    """A body cut short is retried under the same policy as a failed request: retry_limit more
    attempts, then one line naming them."""
    blob_id, _ = blob
    proxy.truncate_next(10, match=lambda m, p: m == "GET" and "/blobs/" in p)
    backend = _backend(proxy.host, retry_limit=2)
    try:
        with pytest.raises(TransientBackendError) as info:
            backend.read(blob_id, 1000, 400_000)
    finally:
        backend.close()
    assert "cut short" in str(info.value) and "after 3 attempts" in str(info.value)
    assert proxy.count("truncate") == 3


def test_resets_beyond_retry_limit_fail(proxy: FaultProxy, blob) -> None:
    blob_id, _ = blob
    proxy.reset_next(10)
    backend = _backend(proxy.host, retry_limit=1)
    try:
        with pytest.raises(TransientBackendError) as info:
            backend.read(blob_id, 0, 10)
    finally:
        backend.close()
    assert "connection" in str(info.value) and "2 attempts" in str(info.value)


@pytest.mark.parametrize(("status", "error"), [(403, PermissionDeniedError), (400, BackendError),
                                               (404, BlobNotFoundError), (429, TransientBackendError)])
def test_other_4xx_are_not_retried(proxy: FaultProxy, blob, status: int, error: type) -> None:
    blob_id, _ = blob
    proxy.fail_next(1, status)
    backend = _backend(proxy.host, retry_limit=3)
    try:
        with pytest.raises(error) as info:
            backend.read(blob_id, 0, 10)
    finally:
        backend.close()
    assert f"HTTP {status}" in str(info.value)
    assert _blob_gets(proxy) == 1


def test_refused_connection_fails_fast_and_clearly(blob) -> None:
    blob_id, _ = blob
    port = free_port()  # nothing listens there
    backend = _backend(f"127.0.0.1:{port}", retry_limit=2, timeout=1, connect_timeout=1)
    started = time.monotonic()
    try:
        with pytest.raises(TransientBackendError) as info:
            backend.read(blob_id, 0, 10)
    finally:
        backend.close()
    assert time.monotonic() - started < 1 * 3 + 2
    msg = str(info.value)
    assert "connection refused" in msg and f"127.0.0.1:{port}" in msg and "3 attempts" in msg


def test_hung_registry_fails_within_timeout_bound(blob) -> None:
    """A server that accepts and never answers: timeout x (retry_limit + 1) plus slack, not a hang."""
    blob_id, _ = blob
    timeout, retry_limit = 0.5, 2
    with BlackholeServer() as hole:
        backend = _backend(hole.address, retry_limit=retry_limit, timeout=timeout, connect_timeout=timeout)
        started = time.monotonic()
        try:
            with pytest.raises(TransientBackendError) as info:
                backend.read(blob_id, 0, 10)
        finally:
            backend.close()
        elapsed = time.monotonic() - started
    assert timeout * (retry_limit + 1) * 0.9 <= elapsed < timeout * (retry_limit + 1) + 2.5
    assert "read timeout" in str(info.value)
