"""The installed distribution's entry point is really wired: `nydus plugins --json` lists it."""

from __future__ import annotations

from importlib.metadata import version

from nydus_testkit.cli import nydus_plugins_json, plugin_record, run_nydus


def test_listed_by_nydus_plugins() -> None:
    listing = nydus_plugins_json()
    record = plugin_record(listing, "backend-localfs")
    assert record["distribution"] == "nydus-backend-localfs"
    assert record["version"] == version("nydus-backend-localfs")
    assert record["module"] == "nydus_backend_localfs.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"] == {"backend": ["localfs"]}
    assert "localfs" in listing["capabilities"]["backend"]


def test_check_finds_it() -> None:
    proc = run_nydus("plugins", "--check", "backend:localfs")
    assert proc.returncode == 0, proc.stderr
    assert "nydus_backend_localfs.backend.LocalFsBackend" in proc.stdout
