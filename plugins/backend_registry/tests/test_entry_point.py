"""The installed distribution's entry point is really wired: `nydus plugins --json` lists it."""

from __future__ import annotations

from importlib.metadata import version

from nydus_core.testing.cli import nydus_plugins_json, plugin_record, run_nydus


def test_listed_by_nydus_plugins() -> None:
    listing = nydus_plugins_json()
    record = plugin_record(listing, "backend-registry")
    assert record["distribution"] == "nydus-backend-registry"
    assert record["version"] == version("nydus-backend-registry")
    assert record["module"] == "nydus_backend_registry.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"] == {"backend": ["registry"]}
    assert "registry" in listing["capabilities"]["backend"]


def test_check_finds_it() -> None:
    proc = run_nydus("plugins", "--check", "backend:registry")
    assert proc.returncode == 0, proc.stderr
    assert "nydus_backend_registry.backend.RegistryBackend" in proc.stdout


def test_hooks_module_does_not_import_requests() -> None:
    """`nydus --help` stays fast: requests is imported by the implementation, not by hooks.py."""
    import subprocess
    import sys

    code = "import sys, nydus_backend_registry.hooks; print('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
