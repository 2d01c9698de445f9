"""The installed distribution's entry point is really wired: `nydus plugins` lists `s3`."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite


class TestS3EntryPoint(EntryPointSuite):
    entry_point = "backend-s3"
    provides = {"backend": ["s3"]}
    implementation = "nydus_backend_s3.backend.S3Backend"
    lazy_modules = ("boto3", "botocore", "s3transfer")
