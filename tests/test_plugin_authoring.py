"""docs/plugin-authoring.md works verbatim for someone outside the repository: its worked example,
copied out of the tree, goes through the guide's own commands (fresh venv, build the wheel, install it
with nydus-py's wheelhouse, `nydus plugins --check`, its tests with the contract suite) and passes;
and the code the guide shows is the example's code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from nydus_testkit.cli import clean_env
from nydus_testsupport.venv import repo_root

EXAMPLE = repo_root() / "docs" / "examples" / "backend_example"
GUIDE = repo_root() / "docs" / "plugin-authoring.md"
MARKER = "<!-- The block below is run as it stands by tests/test_plugin_authoring.py"


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, re.M | re.S)


def guide_commands() -> str:
    """The shell block the guide marks as the one to follow."""
    after = GUIDE.read_text().split(MARKER, 1)[1]
    return _blocks(after, "sh")[0]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_following_the_guide_outside_the_repository(wheelhouse: Path,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("author")
    assert not outside.resolve().is_relative_to(repo_root().resolve())
    project = outside / "backend_example"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(
        "__pycache__", ".pytest_cache", "*.egg-info", "dist", "build", ".venv"))
    script = guide_commands()
    assert "python -m build --wheel" in script and '--find-links "$WHEELS"' in script

    # PYTEST_ADDOPTS: the guide's own pytest run also lists each test's outcome (-rA).
    env = clean_env({"WHEELS": str(wheelhouse), "PYTHONDONTWRITEBYTECODE": "1",
                     "PYTEST_ADDOPTS": "-rA -p no:cacheprovider"})
    for var in ("VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(var, None)
    # The guide's python3 is the user's: never this repository's venv.
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not Path(p).resolve().is_relative_to(repo_root().resolve()))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=project, env=env,
                          capture_output=True, text=True, timeout=1200,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]

    # The wheel was built there and installed into the guide's venv, from the wheelhouse's nydus-core.
    assert (project / "dist" / "nydus_backend_httpdir-0.1.0-py3-none-any.whl").is_file()
    site = list((project / ".venv" / "lib").glob("python3*/site-packages"))
    assert len(site) == 1
    assert (site[0] / "nydus_backend_httpdir" / "backend.py").is_file()
    assert (site[0] / "nydus_core").is_dir() and (site[0] / "nydus_testkit").is_dir()
    assert "backend httpdir: nydus_backend_httpdir.backend.HttpDirBackend" in proc.stdout

    # The contract suite ran against it and nothing was skipped.
    summary = [line for line in proc.stdout.splitlines() if re.search(r"\d+ passed", line)][-1]
    assert "failed" not in summary and "skipped" not in summary and "error" not in summary, summary
    for contract_test in ("test_ranged_read[middle]", "test_readv", "test_concurrent_reads",
                          "test_missing_blob_raises_not_found", "test_write"):
        assert f"PASSED tests/test_httpdir.py::TestHttpDir::{contract_test}" in proc.stdout


def test_guide_shows_the_example_as_it_is() -> None:
    guide = GUIDE.read_text()
    for name in ("nydus_backend_httpdir/hooks.py", "pyproject.toml"):
        assert (EXAMPLE / name).read_text().strip() in guide, f"{name} in the guide is out of date"
    python_blocks = _blocks(guide, "python")
    tests_py = (EXAMPLE / "tests" / "test_httpdir.py").read_text()
    assert any("class TestHttpDir" in b and "def server" in b and b.strip() in tests_py
               for b in python_blocks), "the guide's server fixture or TestHttpDir differs from the example's"
    backend_lines = (EXAMPLE / "nydus_backend_httpdir" / "backend.py").read_text().splitlines()
    shown = next(b for b in python_blocks if "def validate_config" in b)
    it = iter(backend_lines)
    assert all(line in it for line in shown.splitlines() if line.strip()), "validate_config differs"
    layout = guide.split("```\ndocs/examples/backend_example/\n", 1)[1].split("```", 1)[0]
    listed = sorted(line.split()[0] for line in layout.splitlines() if line.strip())
    actual = sorted(str(p.relative_to(EXAMPLE)) for p in EXAMPLE.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    assert listed == actual, "the layout shown in the guide differs from the example's files"
