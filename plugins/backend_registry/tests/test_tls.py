"""TLS: verified by default, extra CA files, skip_verify (with upstream's HTTPS->HTTP fallback)."""

from __future__ import annotations

import pytest
from nydus_backend_registry.backend import RegistryBackend
from nydus_testkit.samples import blob_id_of, random_bytes
from nydus_testsupport.registry import RegistryFlavour

from nydus_core.errors import BackendError

REPO = "tls/test"


@pytest.fixture
def tls_registry(registry_factory):
    server = registry_factory.registry(tls=True)
    data = random_bytes(20_000, seed=80)
    with server.client() as client:  # trusts the test CA
        client.push_blob(REPO, data)
    return server, blob_id_of(data), data


def test_unknown_ca_is_refused(tls_registry) -> None:
    server, blob_id, _ = tls_registry
    cfg = server.backend_config(REPO)
    del cfg["ca_cert_files"]
    backend = RegistryBackend(cfg)
    try:
        with pytest.raises(BackendError) as info:
            backend.read(blob_id, 0, 10)
    finally:
        backend.close()
    assert "TLS error (certificate verify failed)" in str(info.value)


def test_ca_cert_files_are_trusted(tls_registry) -> None:
    server, blob_id, data = tls_registry
    backend = RegistryBackend(server.backend_config(REPO))
    try:
        assert backend.read(blob_id, 5, 100) == data[5:105]
    finally:
        backend.close()


def test_skip_verify(tls_registry) -> None:
    server, blob_id, data = tls_registry
    cfg = server.backend_config(REPO, skip_verify=True)
    del cfg["ca_cert_files"]
    backend = RegistryBackend(cfg)
    try:
        assert backend.read(blob_id, 5, 100) == data[5:105]
    finally:
        backend.close()


def test_skip_verify_falls_back_to_http(registry_open: RegistryFlavour) -> None:
    """Upstream: with skip_verify an https config still reaches a plain-HTTP registry."""
    data = random_bytes(1000, seed=81)
    with registry_open.client() as client:
        client.push_blob(REPO, data)
    for cfg, ok in ((registry_open.backend_config(REPO, scheme="https", skip_verify=True), True),
                    (registry_open.backend_config(REPO, scheme="", skip_verify=False), True),
                    (registry_open.backend_config(REPO, scheme="https"), False)):
        backend = RegistryBackend(cfg)
        try:
            if ok:
                assert backend.read(blob_id_of(data), 0, 10) == data[:10]
                assert backend.transport.scheme == "http"
            else:
                with pytest.raises(BackendError, match="TLS error"):
                    backend.read(blob_id_of(data), 0, 10)
        finally:
            backend.close()
