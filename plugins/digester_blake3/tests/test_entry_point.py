"""The installed distribution's entry point is really wired: `nydus plugins --json` lists it."""

from __future__ import annotations

from importlib.metadata import version

from nydus_testkit.cli import nydus_plugins_json, plugin_record


def test_listed_by_nydus_plugins() -> None:
    listing = nydus_plugins_json()
    record = plugin_record(listing, "digester-blake3")
    assert record["distribution"] == "nydus-digester-blake3"
    assert record["version"] == version("nydus-digester-blake3")
    assert record["module"] == "nydus_digester_blake3.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"] == {"digester": ["blake3"]}
    assert "blake3" in listing["capabilities"]["digester"]
