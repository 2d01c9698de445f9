"""The installed distribution's entry point is really wired: `nydus plugins` lists it."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite


class TestLocalFsEntryPoint(EntryPointSuite):
    entry_point = "backend-localfs"
    provides = {"backend": ["localfs"]}
    implementation = "nydus_backend_localfs.backend.LocalFsBackend"
