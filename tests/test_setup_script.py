"""scripts/setup.sh on a stock Debian 12: only Debian's own python3 on PATH, which has no usable pip
(Debian marks it externally managed), and no uv. The script must still get uv (into a private venv)
and build the workspace venv. Runs in a scratch copy of the repository."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from nydus_testsupport.venv import repo_root

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

STOCK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _scratch_copy(target: Path) -> Path:
    """Copy the repository's files (tracked, and new ones not ignored) without .venv or .tools."""
    root = repo_root()
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = root / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dest.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dest)
    return target


@pytest.mark.skipif(not Path("/usr/bin/python3").exists() or not Path("/usr/bin/dpkg-query").exists(),
                    reason="needs a Debian system python3 (/usr/bin/python3) and dpkg")
def test_setup_with_stock_debian_path(tmp_path: Path) -> None:
    assert shutil.which("uv", path=STOCK_PATH) is None, "this test needs a PATH without uv"
    repo = _scratch_copy(tmp_path / "repo")
    try:
        _check_setup(repo)
    finally:
        shutil.rmtree(repo, ignore_errors=True)  # about 0.5 GB of venvs


def _check_setup(repo: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UV_", "VIRTUAL_ENV", "PYTHON", "NYDUS_"))}
    env["PATH"] = STOCK_PATH
    env["UV_LINK_MODE"] = "hardlink"  # setup.sh defaults to copy; links save copying 0.5 GB here
    env["UV_COMPILE_BYTECODE"] = "0"  # setup.sh compiles by default; ~20 s this test need not spend
    proc = subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=1200, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.strip().endswith("setup: ready (.venv)")

    # uv came from a private venv of Debian's python3, linked where scripts/test.sh looks.
    assert (repo / ".tools" / "uv" / "bin" / "uv").is_file()
    assert os.readlink(repo / ".tools" / "bin" / "uv") == "../uv/bin/uv"
    assert "home = /usr/bin" in (repo / ".tools" / "uv" / "pyvenv.cfg").read_text()
    if glob.glob("/usr/lib/python3*/EXTERNALLY-MANAGED"):
        refused = subprocess.run(["/usr/bin/python3", "-m", "pip", "install", "--dry-run", "uv"], env=env,
                                 capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert refused.returncode != 0  # the system python takes no pip installs: setup did not use it

    # The workspace venv is on Debian's python3 and has every plugin, loading cleanly.
    assert "home = /usr/bin" in (repo / ".venv" / "pyvenv.cfg").read_text()
    listing = subprocess.run([str(repo / ".venv" / "bin" / "nydus"), "plugins", "--json"], env=env,
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert listing.returncode == 0, listing.stderr
    plugins = json.loads(listing.stdout)["plugins"]
    assert [p["error"] for p in plugins] == [None] * len(plugins)
    assert len(plugins) == 1 + len(list((repo / "plugins").glob("*/pyproject.toml")))

    # Idempotent: a second run installs nothing and keeps the private uv.
    again = subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=600, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "installing" not in again.stdout
