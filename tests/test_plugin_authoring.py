"""The worked example of docs/plugin-authoring.md really works: its wheel, pip-installed with
nydus-core and nydus-testkit into a fresh venv, is listed by `nydus plugins` and passes
BackendContract there."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from nydus_testkit.cli import nydus_plugins_json, plugin_record, run_nydus
from nydus_testsupport.venv import Venv, build_wheel, create_venv, repo_root

pytestmark = pytest.mark.slow

EXAMPLE = repo_root() / "docs" / "examples" / "backend_example"
GUIDE = repo_root() / "docs" / "plugin-authoring.md"


@pytest.fixture(scope="module")
def example_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project, copied out of the repository (it must stand on its own)."""
    target = tmp_path_factory.mktemp("example") / "backend_example"
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info", "dist", "build")
    shutil.copytree(EXAMPLE, target, ignore=ignore)
    return target


@pytest.fixture(scope="module")
def example_venv(tmp_path_factory: pytest.TempPathFactory, example_copy: Path) -> Venv:
    venv = create_venv(tmp_path_factory.mktemp("example-venv") / "venv")
    example_wheel = build_wheel(example_copy, example_copy.parent / "dist")
    venv.install(build_wheel(repo_root()), build_wheel(repo_root() / "testkit"), example_wheel, "pytest>=8")
    return venv


def test_example_is_listed_by_nydus_plugins(example_venv: Venv) -> None:
    listing = nydus_plugins_json(bin_dir=example_venv.bin)
    record = plugin_record(listing, "backend-httpdir")
    assert record["distribution"] == "nydus-backend-httpdir"
    assert record["provides"] == {"backend": ["httpdir"]}
    assert record["error"] is None
    assert listing["capabilities"]["backend"] == ["httpdir"]
    check = run_nydus("plugins", "--check", "backend:httpdir", bin_dir=example_venv.bin)
    assert check.returncode == 0, check.stderr


def test_example_passes_backend_contract_in_its_venv(example_venv: Venv, example_copy: Path) -> None:
    where = example_venv.run("python", "-c", "import nydus_backend_httpdir as m; print(m.__file__)")
    assert "site-packages" in where.stdout  # the installed wheel, not the source tree
    proc = example_venv.run("pytest", "-q", "-rA", "-p", "no:cacheprovider", cwd=example_copy,
                            env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"=* ?\d+ passed in [\d.]+s ?=*", summary), summary  # nothing skipped or failed
    for contract_test in ("test_ranged_read[middle]", "test_readv", "test_concurrent_reads",
                          "test_missing_blob_raises_not_found", "test_write"):
        assert f"PASSED tests/test_httpdir.py::TestHttpDir::{contract_test}" in proc.stdout


def test_guide_shows_the_example_as_it_is() -> None:
    guide = GUIDE.read_text()
    for name in ("nydus_backend_httpdir/hooks.py", "pyproject.toml"):
        assert (EXAMPLE / name).read_text().strip() in guide, f"{name} in the guide is out of date"
    layout = guide.split("```\ndocs/examples/backend_example/\n", 1)[1].split("```", 1)[0]
    listed = sorted(line.split()[0] for line in layout.splitlines() if line.strip())
    actual = sorted(str(p.relative_to(EXAMPLE)) for p in EXAMPLE.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    assert listed == actual, "the layout shown in the guide differs from the example's files"
