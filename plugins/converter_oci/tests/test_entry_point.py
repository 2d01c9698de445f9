"""The installed distribution's entry point is really wired: listed by `nydus plugins`, `nydus convert`."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from nydus_testkit.cli import nydus_plugins_json, plugin_record, run_nydus


def test_listed_by_nydus_plugins() -> None:
    listing = nydus_plugins_json()
    record = plugin_record(listing, "converter-oci")
    assert record["distribution"] == "nydus-converter-oci"
    assert record["version"] == version("nydus-converter-oci")
    assert record["module"] == "nydus_converter_oci.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"]["converter"] == ["oci"]


def test_nydus_convert_is_added() -> None:
    proc = run_nydus("convert", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--chunk-dict" in proc.stdout and "--merge-platform" in proc.stdout


def test_hooks_module_does_not_import_requests() -> None:
    code = "import sys, nydus_converter_oci.hooks; print('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
