"""The Dragonfly `proxy` block on the oss backend: reads go through the proxy while it is up, fall back
to the object store when it is down, and return once the background health check (`ping_url`, every
`check_interval`) passes again."""

from __future__ import annotations

from nydus_backend_oss.backend import OSSBackend
from nydus_testsupport.objstore_suites import ObjectStoreProxySuite


class TestOSSProxy(ObjectStoreProxySuite):
    backend_cls = OSSBackend
    bucket = "oss-proxied"
