"""The installed distribution's entry point is really wired: `nydus plugins` lists it."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite

from nydus_core.plugins import registry
from nydus_core.storage.prefetch import BasePrefetcher


class TestAllEntryPoint(EntryPointSuite):
    entry_point = "prefetch-all"
    provides = {"prefetcher": ["all"]}
    implementation = "nydus_prefetch_all.prefetcher.AllPrefetcher"


def test_registered_class() -> None:
    cls = registry("prefetcher").get("all")
    assert issubclass(cls, BasePrefetcher) and cls.name == "all"
