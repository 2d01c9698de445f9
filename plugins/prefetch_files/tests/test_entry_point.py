"""The installed distribution's entry point is really wired: `nydus plugins --json` lists it."""

from __future__ import annotations

from importlib.metadata import version

from nydus_testkit.cli import nydus_plugins_json, run_nydus

from nydus_core.plugins import registry
from nydus_core.storage.prefetch import BasePrefetcher


def test_listed_by_nydus_plugins() -> None:
    listing = nydus_plugins_json()
    record = next(r for r in listing["plugins"] if r["name"] == "prefetch-files")
    assert record["distribution"] == "nydus-prefetch-files"
    assert record["version"] == version("nydus-prefetch-files")
    assert record["module"] == "nydus_prefetch_files.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"] == {"prefetcher": ["files"]}


def test_registered_class() -> None:
    cls = registry("prefetcher").get("files")
    assert issubclass(cls, BasePrefetcher) and cls.name == "files"


def test_check_finds_it() -> None:
    proc = run_nydus("plugins", "--check", "prefetcher:files")
    assert proc.returncode == 0, proc.stderr
