"""BackendContract on the oss backend against a real moto server on 127.0.0.1.

oss2 addresses an IP endpoint path-style, so moto's S3 API stands in for OSS (moto checks no
signatures; the signature itself is checked in test_signature.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from nydus_backend_oss.backend import OSSBackend

from nydus_core.testing import BackendContract
from nydus_core.testing.objstore import ACCESS_KEY_ID, ACCESS_KEY_SECRET, MotoServer, shared_moto

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    server = shared_moto()
    server.create_bucket("oss-contract")
    return server


class TestOSSContract(BackendContract):
    """Blobs under a fresh ``object_prefix`` per test; ``put_blob`` stores them with plain boto3."""

    writable = True

    @pytest.fixture
    def prefix(self) -> str:
        return f"nydus/{next(_prefixes)}/"

    @pytest.fixture
    def backend(self, moto: MotoServer, prefix: str) -> Iterator[OSSBackend]:
        backend = OSSBackend({
            "scheme": "http", "endpoint": moto.endpoint, "bucket_name": "oss-contract",
            "object_prefix": prefix, "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET,
        })
        yield backend
        backend.close()

    @pytest.fixture
    def put_blob(self, moto: MotoServer, prefix: str) -> Callable[[str, bytes], None]:
        client = moto.client()
        return lambda blob_id, data: client.put_object(Bucket="oss-contract", Key=prefix + blob_id, Body=data)
