"""BackendContract against a real docker-registry, three ways: open, htpasswd Basic, token auth.

Blobs are put with the registry client (not through the backend under test).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pytest
from nydus_backend_registry.backend import RegistryBackend
from nydus_testkit import BackendContract
from nydus_testkit.samples import blob_id_of
from nydus_testsupport.registry import RegistryFlavour

from nydus_core.errors import IntegrityError


class _RegistryContract(BackendContract):
    writable = True
    flavour_fixture = ""
    repo = ""

    @pytest.fixture
    def flavour(self, request: pytest.FixtureRequest) -> RegistryFlavour:
        return request.getfixturevalue(self.flavour_fixture)

    @pytest.fixture
    def backend(self, flavour: RegistryFlavour) -> Iterator[RegistryBackend]:
        backend = RegistryBackend(flavour.backend_config(self.repo))
        yield backend
        backend.close()

    @pytest.fixture
    def put_blob(self, flavour: RegistryFlavour) -> Iterator[Callable[[str, bytes], None]]:
        client = flavour.client()

        def put(blob_id: str, data: bytes) -> None:
            client.push_blob(self.repo, data, digest="sha256:" + blob_id)

        yield put
        client.close()

    def test_write_without_size_and_overwrite(self, backend: RegistryBackend) -> None:
        """A registry is content-addressed: a blob id names exactly one content.

        Writing without a size works; writing other bytes under an existing id is refused as a
        digest mismatch and the stored blob is unchanged (the contract's overwrite cannot apply).
        """
        small = b"first version"
        blob_id = blob_id_of(small)
        backend.write(blob_id, io.BytesIO(small))
        assert backend.read(blob_id, 0, 100) == small
        with pytest.raises(IntegrityError, match="digest"):
            backend.write(blob_id, io.BytesIO(small * 2))
        assert backend.size(blob_id) == len(small)
        assert backend.read(blob_id, 0, 100) == small

    def test_large_write_goes_in_chunks(self, backend: RegistryBackend) -> None:
        from nydus_backend_registry.backend import WRITE_CHUNK
        from nydus_testkit.samples import payload

        data = payload(WRITE_CHUNK * 2 + 12345, seed=77)
        blob_id = blob_id_of(data)
        backend.write(blob_id, io.BytesIO(data))  # no size given
        assert backend.size(blob_id) == len(data)
        assert backend.read(blob_id, WRITE_CHUNK - 5, 10) == data[WRITE_CHUNK - 5:WRITE_CHUNK + 5]
        short = payload(WRITE_CHUNK + 100, seed=78)
        with pytest.raises(IntegrityError, match="expected"):
            backend.write(blob_id_of(short), io.BytesIO(short[:-1]), len(short))
        assert not backend.exists(blob_id_of(short))


class TestOpenRegistry(_RegistryContract):
    flavour_fixture = "registry_open"
    repo = "contract/open"


class TestBasicAuthRegistry(_RegistryContract):
    flavour_fixture = "registry_basic"
    repo = "contract/basic"


class TestTokenAuthRegistry(_RegistryContract):
    flavour_fixture = "registry_token"
    repo = "contract/token"
