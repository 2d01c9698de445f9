"""What ships holds no test code: no shipped module imports a testing module, and no wheel of the
core or of a plugin holds the test kit, the test support package or a ``testing`` module."""

from __future__ import annotations

import ast
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from nydus_testsupport.venv import build_wheel, repo_root

ROOT = repo_root()
#: Top-level modules only tests may import.
TEST_ONLY = {"nydus_testkit", "nydus_testsupport", "pytest", "_pytest", "moto", "hypothesis"}


def shipped_packages() -> list[Path]:
    """``nydus_core`` and the package directory of every plugin."""
    plugins = sorted(p for p in (ROOT / "plugins").glob("*/nydus_*") if p.is_dir())
    assert len(plugins) >= 14, plugins
    return [ROOT / "nydus_core", *plugins]


def _module_name(package_dir: Path, path: Path) -> str:
    rel = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line, absolute module name)`` of every import in ``path`` (relative ones resolved),
    and of every literal ``importlib.import_module("...")`` / ``__import__("...")``."""
    tree = ast.parse(path.read_bytes(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # "from . import testing" imports a submodule
                yield node.lineno, f"{target}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def _is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] in TEST_ONLY or (parts[0].startswith("nydus_") and "testing" in parts)


def test_no_shipped_module_imports_a_testing_module() -> None:
    offenders = []
    checked = 0
    for package_dir in shipped_packages():
        for path in sorted(package_dir.rglob("*.py")):
            module = _module_name(package_dir, path)
            for line, name in _imports(path, module):
                checked += 1
                if _is_test_module(name):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: imports {name}")
    assert checked > 500  # the walk really saw the code
    assert offenders == []


def test_no_testing_module_inside_a_shipped_package() -> None:
    # Source files only: a checkout may keep an ignored __pycache__ of a module that was removed.
    found = [str(p.relative_to(ROOT)) for d in shipped_packages() for p in d.rglob("*.py")
             if "testing" in p.relative_to(d).with_suffix("").parts]
    assert found == []


def test_the_walker_sees_test_imports(tmp_path: Path) -> None:
    """The check above can fail: each form of import it must catch is caught."""
    pkg = tmp_path / "nydus_sample"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        "import os\n"
        "from . import testing\n"
        "from .testing import helper\n"
        "import nydus_testkit.fakes\n"
        "from nydus_testsupport import registry\n"
        "import importlib\n"
        "importlib.import_module('nydus_other.testing')\n"
        "def f():\n"
        "    import pytest\n"
    )
    found = [(line, name) for line, name in _imports(pkg / "mod.py", "nydus_sample.mod")
             if _is_test_module(name)]
    assert sorted({line for line, _ in found}) == [2, 3, 4, 5, 7, 9]
    assert "nydus_sample.testing" in {name for _, name in found}
    assert not _is_test_module("os") and not _is_test_module("nydus_core.config")


def _distributions() -> list[Path]:
    """The project directory of nydus-core and of every plugin."""
    return [ROOT, *sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())]


def _forbidden_in_wheel(name: str) -> bool:
    parts = name.split("/")
    top = parts[0]
    return (top in ("nydus_testkit", "nydus_testsupport", "testkit", "testsupport", "tests")
            or any(p in ("testing", "testing.py") for p in parts))


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first test to ask for the wheelhouse builds it
def test_core_and_plugin_wheels_hold_no_test_code(wheelhouse: Path) -> None:
    """Every published wheel but the test kit itself, as scripts/wheels.sh builds them."""
    listed: dict[str, list[str]] = {}
    for wheel in sorted(wheelhouse.glob("*.whl")):
        if not wheel.name.startswith("nydus_testkit-"):
            with zipfile.ZipFile(wheel) as zf:
                listed[wheel.name] = zf.namelist()
    assert len(listed) >= len(_distributions()) >= 15
    bad = {wheel: [n for n in names if _forbidden_in_wheel(n)] for wheel, names in listed.items()}
    assert {w: b for w, b in bad.items() if b} == {}
    core = next(names for wheel, names in listed.items() if wheel.startswith("nydus_core-"))
    assert "nydus_core/mounts.py" in core and "nydus_core/plugins.py" in core


@pytest.mark.slow
def test_testkit_wheel_is_the_kit_and_testsupport_is_private(tmp_path: Path) -> None:
    kit = build_wheel(ROOT / "testkit", tmp_path / "kit")
    with zipfile.ZipFile(kit) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    modules = {n for n in names if n.endswith(".py")}
    assert {"nydus_testkit/contracts.py", "nydus_testkit/rangeserver.py",
            "nydus_testkit/entry_points.py"} <= modules
    assert all(n.startswith("nydus_testkit/") for n in modules), modules
    assert "nydus_testkit/py.typed" in names
    assert "Requires-Dist: nydus-core" in metadata and "Requires-Dist: pytest" in metadata
    support = build_wheel(ROOT / "testsupport", tmp_path / "support")
    with zipfile.ZipFile(support) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "Classifier: Private :: Do Not Upload" in metadata
