"""BackendContract on the s3 backend against a real moto S3 server on 127.0.0.1."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from nydus_backend_s3.backend import S3Backend

from nydus_core.testing import BackendContract
from nydus_core.testing.objstore import ACCESS_KEY_ID, ACCESS_KEY_SECRET, MotoServer, shared_moto

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    server = shared_moto()
    server.create_bucket("s3-contract")
    return server


class TestS3Contract(BackendContract):
    """Blobs under a fresh ``object_prefix`` per test; ``put_blob`` stores them with plain boto3."""

    writable = True

    @pytest.fixture
    def prefix(self) -> str:
        return f"nydus/{next(_prefixes)}/"

    @pytest.fixture
    def backend(self, moto: MotoServer, prefix: str) -> Iterator[S3Backend]:
        backend = S3Backend({
            "scheme": "http", "endpoint": moto.endpoint, "region": "us-east-1",
            "bucket_name": "s3-contract", "object_prefix": prefix,
            "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET,
        })
        yield backend
        backend.close()

    @pytest.fixture
    def put_blob(self, moto: MotoServer, prefix: str) -> Callable[[str, bytes], None]:
        client = moto.client()
        return lambda blob_id, data: client.put_object(Bucket="s3-contract", Key=prefix + blob_id, Body=data)
