"""The installed distribution's entry point is really wired: `nydus plugins --json` lists it."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite


class TestRegistryEntryPoint(EntryPointSuite):
    """requests is imported by the implementation, not by hooks.py."""

    entry_point = "backend-registry"
    provides = {"backend": ["registry"]}
    implementation = "nydus_backend_registry.backend.RegistryBackend"
    lazy_modules = ("requests",)
    lazy_through_registry = False
