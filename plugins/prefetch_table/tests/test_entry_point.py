"""The installed distribution's entry point is really wired: `nydus plugins` lists it."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite

from nydus_core.plugins import registry
from nydus_core.storage.prefetch import BasePrefetcher


class TestTableEntryPoint(EntryPointSuite):
    entry_point = "prefetch-table"
    provides = {"prefetcher": ["table"]}
    implementation = "nydus_prefetch_table.prefetcher.TablePrefetcher"


def test_registered_class() -> None:
    cls = registry("prefetcher").get("table")
    assert issubclass(cls, BasePrefetcher) and cls.name == "table"
