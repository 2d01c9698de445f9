"""Run the installed ``nydus`` command as a subprocess, the way users do, and read its output.

Every function takes ``bin_dir``: the ``bin`` directory of the environment whose ``nydus`` to run
(default: the one next to the running interpreter, i.e. the current venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["clean_env", "nydus_plugins_json", "plugin_record", "run_nydus"]

#: Variables that would change what a child process loads; tests set them explicitly.
_ISOLATE = ("NYDUS_STRICT_PLUGINS", "NYDUS_DISABLE_PLUGINS", "NYDUS_DEBUG", "PYTHONPATH", "PYTHONHOME",
            "PYTHONSTARTUP", "PYTHONSAFEPATH")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return ``os.environ`` without the variables that would change plugin loading, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _ISOLATE}
    env.update(extra or {})
    return env


def _bin_dir(bin_dir: str | os.PathLike[str] | None) -> Path:
    return Path(bin_dir) if bin_dir is not None else Path(sys.executable).parent


def run_nydus(
    *args: str,
    bin_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``<bin_dir>/nydus ARGS`` with a clean environment (plus ``env``); never raises on exit status."""
    exe = _bin_dir(bin_dir) / "nydus"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} does not exist (is nydus-core installed in that environment?)")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_env(env), stdin=subprocess.DEVNULL)


def nydus_plugins_json(
    bin_dir: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Return the parsed output of ``nydus plugins --json`` (asserting it exited 0 with valid JSON)."""
    proc = run_nydus("plugins", "--json", bin_dir=bin_dir, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"nydus plugins --json exited {proc.returncode}: {proc.stderr.strip()}")
    listing = json.loads(proc.stdout)
    if not isinstance(listing, dict):
        raise AssertionError(f"nydus plugins --json printed {type(listing).__name__}, not an object")
    return listing


def plugin_record(listing: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Return the record of entry point ``name`` from a ``nydus plugins --json`` listing."""
    for record in listing["plugins"]:
        if record["name"] == name:
            return dict(record)
    names = ", ".join(r["name"] for r in listing["plugins"])
    raise AssertionError(f"plugin '{name}' is not listed by nydus plugins (listed: {names})")
