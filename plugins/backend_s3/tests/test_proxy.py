"""The Dragonfly `proxy` block on the s3 backend: reads go through the proxy while it is up, fall back
to the object store when it is down, and return once the background health check (`ping_url`, every
`check_interval`) passes again."""

from __future__ import annotations

from nydus_backend_s3.backend import S3Backend
from nydus_testsupport.objstore_suites import ObjectStoreProxySuite


class TestS3Proxy(ObjectStoreProxySuite):
    backend_cls = S3Backend
    bucket = "s3-proxied"
