"""The installed distribution's entry point is really wired: `nydus plugins` lists it."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite

from nydus_core.plugins import registry
from nydus_core.storage.prefetch import BasePrefetcher


class TestFilesEntryPoint(EntryPointSuite):
    entry_point = "prefetch-files"
    provides = {"prefetcher": ["files"]}
    implementation = "nydus_prefetch_files.prefetcher.FilesPrefetcher"


def test_registered_class() -> None:
    cls = registry("prefetcher").get("files")
    assert issubclass(cls, BasePrefetcher) and cls.name == "files"
