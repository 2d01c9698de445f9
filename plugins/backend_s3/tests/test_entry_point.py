"""The installed distribution's entry point is really wired: `nydus plugins` lists `s3`."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from nydus_core.testing.cli import nydus_plugins_json, plugin_record, run_nydus


def test_listed_by_nydus_plugins() -> None:
    listing = nydus_plugins_json()
    record = plugin_record(listing, "backend-s3")
    assert record["distribution"] == "nydus-backend-s3"
    assert record["version"] == version("nydus-backend-s3")
    assert record["module"] == "nydus_backend_s3.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"] == {"backend": ["s3"]}
    assert "s3" in listing["capabilities"]["backend"]


def test_check_finds_it() -> None:
    proc = run_nydus("plugins", "--check", "backend:s3")
    assert proc.returncode == 0, proc.stderr
    assert "nydus_backend_s3.backend.S3Backend" in proc.stdout


def test_registering_does_not_import_boto3() -> None:
    """Heavy SDK imports happen on first use, so `nydus --help` and `nydus plugins` stay fast."""
    code = (
        "import sys\n"
        "from nydus_core.plugins import registry\n"
        "cls = registry('backend').get('s3')\n"
        "assert cls.__name__ == 'S3Backend'\n"
        "print(sorted(m for m in ('boto3', 'botocore', 's3transfer') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
