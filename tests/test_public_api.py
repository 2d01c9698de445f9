"""Plugins use only the core's public API (docs/core-api.md, ``nydus_core.public_api``).

Walks the source (AST) of every plugin package, the worked example of the author's guide included,
and fails on:

- an import of a core module that is not public, or of a name not in a public module's ``__all__``;
- ``obj._name`` where ``_name`` is not defined by the plugin itself (everything private in the core
  is underscore-named, so this is a private attribute of a core object: ``pipeline._blobs``...);
- an import of another plugin's package that the plugin does not declare as a dependency.

A use of a third-party library's private name that cannot be avoided carries a ``# private-api:
<reason>`` comment on its line or the comment lines just above it.

It also checks the core's side: every public module has a docstring and an ``__all__`` whose names
exist, every non-underscore function and class of a public module is in its ``__all__``, every
public function and class is documented, and docs/core-api.md lists exactly the public modules.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nydus_core.public_api import PUBLIC_MODULES, is_public_module

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in [*ROOT.glob("plugins/*/nydus_*"), *ROOT.glob("docs/examples/*/nydus_*")]
                  if p.is_dir())
#: Underscore names that are public API of the standard library or of a library's types.
STDLIB_UNDERSCORE = {"_asdict", "_replace", "_fields", "_make", "_field_defaults", "_exit", "_name_"}
#: Generated code (protoc output) is not the plugin author's.
GENERATED = {"_gen"}


@dataclass
class Walk:
    """What the walker found in one plugin package."""

    package: str
    dependencies: set[str]
    problems: list[str] = field(default_factory=list)


def _dependencies(pyproject: Path) -> set[str]:
    doc = tomllib.loads(pyproject.read_text())
    deps = doc.get("project", {}).get("dependencies", [])
    return {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].strip().lower().replace("_", "-") for d in deps}


def _sources(pkg: Path) -> list[Path]:
    return sorted(p for p in pkg.rglob("*.py") if not GENERATED & set(p.relative_to(pkg).parts))


def _defined_private(trees: list[ast.AST]) -> set[str]:
    """Underscore names the plugin defines itself (functions, classes, attributes, arguments...)."""
    out: set[str] = set()
    for tree in trees:
        for n in ast.walk(tree):
            name: str | None = None
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = n.name
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                name = n.attr
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                name = n.id
            elif isinstance(n, ast.arg):
                name = n.arg
            elif isinstance(n, ast.alias):
                name = n.asname or n.name.split(".")[-1]
            elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier():
                name = n.value  # __slots__ entries, setattr names
            if name and name.startswith("_"):
                out.add(name)
    return out


def _check_import(module: str, names: list[str], where: str, walk: Walk) -> None:
    if module.startswith("nydus_core"):
        if not is_public_module(module):
            walk.problems.append(f"{where}: imports internal module {module} "
                                 "(public modules: docs/core-api.md)")
            return
        exported = set(getattr(importlib.import_module(module), "__all__", ()))
        for name in names:
            if name == "*" or (name not in exported and not is_public_module(f"{module}.{name}")):
                walk.problems.append(f"{where}: imports {module}.{name}, which is not in its __all__")
        return
    top = module.split(".")[0]
    if top.startswith("nydus_") and top != walk.package:
        dist = top.replace("_", "-")
        if dist not in walk.dependencies:
            walk.problems.append(f"{where}: imports {top} but does not declare {dist} as a dependency")


def _excused(lines: list[str], lineno: int) -> bool:
    """Whether line ``lineno`` (1-based) or the comment lines right above it say ``private-api:``."""
    i = lineno - 1
    if "# private-api:" in lines[i]:
        return True
    while i > 0 and lines[i - 1].lstrip().startswith("#"):
        i -= 1
        if "private-api:" in lines[i]:
            return True
    return False


def walk_package(pkg: Path, dependencies: set[str]) -> Walk:
    """Walk one plugin package; return its problems (``file:line: what``)."""
    walk = Walk(pkg.name, dependencies)
    files = _sources(pkg)
    trees = {p: ast.parse(p.read_text(), str(p)) for p in files}
    mine = _defined_private(list(trees.values()))
    for path, tree in trees.items():
        lines = path.read_text().splitlines()
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for n in ast.walk(tree):
            where = f"{rel}:{getattr(n, 'lineno', 0)}"
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                _check_import(n.module, [a.name for a in n.names], where, walk)
            elif isinstance(n, ast.Import):
                for a in n.names:
                    _check_import(a.name, [], where, walk)
            elif (isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.endswith("__")
                  and n.attr not in mine and n.attr not in STDLIB_UNDERSCORE
                  and not _excused(lines, n.lineno)):
                walk.problems.append(f"{where}: uses private attribute .{n.attr} of an object it did not "
                                     "define")
    return walk


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_plugin_uses_only_the_public_api(pkg: Path) -> None:
    walk = walk_package(pkg, _dependencies(pkg.parent / "pyproject.toml"))
    assert not walk.problems, "\n".join(walk.problems)


def test_the_walker_catches_what_it_must(tmp_path: Path) -> None:
    """Each rule fires on a plugin that breaks it (and not on the same code made right)."""
    pkg = tmp_path / "nydus_frontend_bad"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from nydus_core.storage import ReadPipeline, BlobState\n"
        "from nydus_core.storage.pipeline import ReadPipeline as P\n"
        "from nydus_core.storage.blob_state import BlobState as B\n"
        "import nydus_core.rafs.v6\n"
        "from nydus_backend_s3 import hooks\n"
        "from nydus_core.oci import mediatypes\n"  # a public submodule: fine
        "from nydus_testkit import fakes\n"  # another distribution: must be declared
        "class Mine:\n"
        "    def __init__(self):\n"
        "        self._own = 1\n"
        "    def read(self, pipeline: ReadPipeline):\n"
        "        pipeline._blobs[0].read_cached(None, 0, 1)\n"
        "        # private-api: a reason\n"
        "        pipeline._excused()\n"
        "        return self._own, pipeline.read(1, 0, 1)\n"
    )
    problems = "\n".join(walk_package(pkg, {"nydus-core"}).problems)
    assert "nydus_core.storage.BlobState, which is not in its __all__" in problems
    assert "internal module nydus_core.storage.pipeline" in problems
    assert "internal module nydus_core.storage.blob_state" in problems
    assert "internal module nydus_core.rafs.v6" in problems
    assert "does not declare nydus-backend-s3" in problems
    assert "private attribute ._blobs" in problems
    assert "does not declare nydus-testkit" in problems
    assert "._own" not in problems and "mediatypes" not in problems
    assert "_excused" not in problems
    assert len(problems.splitlines()) == 7
    assert walk_package(pkg, {"nydus-core", "nydus-backend-s3"}).problems == [
        p for p in problems.splitlines() if "nydus-backend-s3" not in p]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_module_declares_and_documents_its_api(name: str) -> None:
    module = importlib.import_module(name)
    assert (module.__doc__ or "").strip(), f"{name} has no docstring"
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    source = inspect.getsource(module)
    defined = [n.name for n in ast.parse(source).body
               if isinstance(n, ast.FunctionDef | ast.ClassDef) and not n.name.startswith("_")]
    unlisted = [n for n in defined if n not in exported]
    assert not unlisted, (f"{name} defines public {unlisted} outside __all__: list them, or "
                          "underscore-name them if they are private")
    undocumented = [n for n in exported if (inspect.isfunction(getattr(module, n))
                                            or inspect.isclass(getattr(module, n)))
                    and not inspect.getdoc(getattr(module, n))]
    assert not undocumented, f"{name}: undocumented public {undocumented}"


def test_core_api_doc_lists_the_public_modules() -> None:
    doc = (ROOT / "docs" / "core-api.md").read_text()
    listed = re.findall(r"^\| `(nydus_core[\w.]*)` \|", doc, flags=re.M)
    assert listed == list(PUBLIC_MODULES)
