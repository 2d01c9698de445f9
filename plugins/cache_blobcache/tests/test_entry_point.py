"""The installed distribution's entry point is really wired: `nydus plugins` lists it."""

from __future__ import annotations

from nydus_testkit.cli import nydus_plugins_json
from nydus_testkit.entry_points import EntryPointSuite

from nydus_core.plugins import registry


class TestBlobCacheEntryPoint(EntryPointSuite):
    entry_point = "cache-blobcache"
    provides = {"cache": ["blobcache"]}
    implementation = "nydus_cache_blobcache.policy.BlobCachePolicy"


def test_alias_is_the_same_class() -> None:
    assert "filecache" in nydus_plugins_json()["capabilities"]["cache"]
    assert registry("cache").get("filecache") is registry("cache").get("blobcache")
