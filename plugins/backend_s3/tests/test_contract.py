"""BackendContract on the s3 backend against a real moto S3 server on 127.0.0.1."""

from __future__ import annotations

from nydus_backend_s3.backend import S3Backend
from nydus_testsupport.objstore_suites import ObjectStoreContract


class TestS3Contract(ObjectStoreContract):
    """Blobs under a fresh ``object_prefix`` per test; ``put_blob`` stores them with plain boto3."""

    backend_cls = S3Backend
    bucket = "s3-contract"
    extra_config = {"region": "us-east-1"}
