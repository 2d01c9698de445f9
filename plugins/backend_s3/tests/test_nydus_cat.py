"""End to end: an image built by nydus-py, its blobs in a moto bucket, and `nydus cat` with a nydusd
config naming the s3 backend gives back every file's bytes."""

from __future__ import annotations

from nydus_backend_s3.backend import S3Backend
from nydus_testsupport.objstore_suites import NydusCatSuite


class TestNydusCatThroughS3(NydusCatSuite):
    backend_cls = S3Backend
    bucket = "s3-layers"
    extra_config = {"region": "us-east-1"}
