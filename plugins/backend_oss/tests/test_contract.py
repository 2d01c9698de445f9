"""BackendContract on the oss backend against a real moto server on 127.0.0.1.

oss2 addresses an IP endpoint path-style, so moto's S3 API stands in for OSS (moto checks no
signatures; the signature itself is checked in test_signature.py).
"""

from __future__ import annotations

from nydus_backend_oss.backend import OSSBackend
from nydus_testsupport.objstore_suites import ObjectStoreContract


class TestOSSContract(ObjectStoreContract):
    """Blobs under a fresh ``object_prefix`` per test; ``put_blob`` stores them with plain boto3."""

    backend_cls = OSSBackend
    bucket = "oss-contract"
