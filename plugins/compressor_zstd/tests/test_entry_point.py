"""The installed distribution's entry point is really wired: `nydus plugins --json` lists it."""

from __future__ import annotations

from importlib.metadata import version

from nydus_testkit.cli import nydus_plugins_json, plugin_record


def test_listed_by_nydus_plugins() -> None:
    listing = nydus_plugins_json()
    record = plugin_record(listing, "compressor-zstd")
    assert record["distribution"] == "nydus-compressor-zstd"
    assert record["version"] == version("nydus-compressor-zstd")
    assert record["module"] == "nydus_compressor_zstd.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"] == {"compressor": ["zstd"]}
    assert "zstd" in listing["capabilities"]["compressor"]
