"""The installed distribution's entry point is really wired: `nydus plugins` lists `oss`."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite


class TestOSSEntryPoint(EntryPointSuite):
    entry_point = "backend-oss"
    provides = {"backend": ["oss"]}
    implementation = "nydus_backend_oss.backend.OSSBackend"
    lazy_modules = ("oss2",)
