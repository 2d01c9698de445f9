"""The installed distribution's entry point is really wired: `nydus plugins --json` lists it."""

from __future__ import annotations

from importlib.metadata import version

from nydus_testkit.cli import nydus_plugins_json, plugin_record


def test_listed_by_nydus_plugins() -> None:
    listing = nydus_plugins_json()
    record = plugin_record(listing, "compressor-lz4")
    assert record["distribution"] == "nydus-compressor-lz4"
    assert record["version"] == version("nydus-compressor-lz4")
    assert record["module"] == "nydus_compressor_lz4.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"] == {"compressor": ["lz4_block"]}
    assert "lz4_block" in listing["capabilities"]["compressor"]
