"""End to end: an image built by nydus-py, its blobs in a moto bucket (standing in for OSS), and
`nydus cat` with a nydusd config naming the oss backend gives back every file's bytes."""

from __future__ import annotations

from nydus_backend_oss.backend import OSSBackend
from nydus_testsupport.objstore_suites import NydusCatSuite


class TestNydusCatThroughOSS(NydusCatSuite):
    backend_cls = OSSBackend
    bucket = "oss-layers"
