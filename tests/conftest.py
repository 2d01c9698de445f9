"""Fixtures shared by the core's tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from nydus_testsupport.venv import repo_root


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every published wheel, built once per session by ``scripts/wheels.sh`` (as a release would)."""
    out = tmp_path_factory.mktemp("wheelhouse")
    proc = subprocess.run(["bash", str(repo_root() / "scripts" / "wheels.sh"), str(out)], capture_output=True,
                          text=True, timeout=900, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise AssertionError(f"scripts/wheels.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return out
