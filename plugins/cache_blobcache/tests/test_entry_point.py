"""The installed distribution's entry point is really wired: `nydus plugins --json` lists it."""

from __future__ import annotations

from importlib.metadata import version

from nydus_testkit.cli import nydus_plugins_json, plugin_record, run_nydus

from nydus_core.plugins import registry


def test_listed_by_nydus_plugins() -> None:
    listing = nydus_plugins_json()
    record = plugin_record(listing, "cache-blobcache")
    assert record["distribution"] == "nydus-cache-blobcache"
    assert record["version"] == version("nydus-cache-blobcache")
    assert record["module"] == "nydus_cache_blobcache.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"] == {"cache": ["blobcache"]}
    assert {"blobcache", "filecache"} <= set(listing["capabilities"]["cache"])


def test_alias_is_the_same_class() -> None:
    assert registry("cache").get("filecache") is registry("cache").get("blobcache")


def test_check_finds_it() -> None:
    proc = run_nydus("plugins", "--check", "cache:filecache")
    assert proc.returncode == 0, proc.stderr
    assert "BlobCachePolicy" in proc.stdout
