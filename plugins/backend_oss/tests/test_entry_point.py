"""The installed distribution's entry point is really wired: `nydus plugins` lists `oss`."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from nydus_core.testing.cli import nydus_plugins_json, plugin_record, run_nydus


def test_listed_by_nydus_plugins() -> None:
    listing = nydus_plugins_json()
    record = plugin_record(listing, "backend-oss")
    assert record["distribution"] == "nydus-backend-oss"
    assert record["version"] == version("nydus-backend-oss")
    assert record["module"] == "nydus_backend_oss.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"] == {"backend": ["oss"]}
    assert "oss" in listing["capabilities"]["backend"]


def test_check_finds_it() -> None:
    proc = run_nydus("plugins", "--check", "backend:oss")
    assert proc.returncode == 0, proc.stderr
    assert "nydus_backend_oss.backend.OSSBackend" in proc.stdout


def test_registering_does_not_import_oss2() -> None:
    """Heavy SDK imports happen on first use, so `nydus --help` and `nydus plugins` stay fast."""
    code = (
        "import sys\n"
        "from nydus_core.plugins import registry\n"
        "cls = registry('backend').get('oss')\n"
        "assert cls.__name__ == 'OSSBackend'\n"
        "print(sorted(m for m in ('oss2',) if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
