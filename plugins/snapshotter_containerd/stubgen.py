"""Generate the Python gRPC stubs from containerd's own API ``.proto`` files.

The protos come from Debian's ``golang-github-containerd-containerd-dev`` (containerd 1.6 API) under
``/usr/share/gocode/src/github.com/containerd/containerd/api`` (or ``$NYDUS_CONTAINERD_PROTO_DIR``).
Each proto is copied with its gogoproto import and options stripped (they only steer Go code
generation) and its imports rewritten to live under ``nydus_snapshotter_containerd/_gen``; then
``grpc_tools.protoc`` writes ``*_pb2.py``, their type stubs ``*_pb2.pyi`` and ``*_pb2_grpc.py`` there.

This is build-time code, not part of the installed package: the hatch build hook
(``hatch_build.py``) loads it by path on every build (editable installs too), so the wheel carries
the stubs and nothing at run time needs ``grpcio-tools``. By hand:
``python plugins/snapshotter_containerd/stubgen.py [PROTO_DIR]`` (with grpcio-tools installed, as in
the workspace's dev group).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

#: Where Debian installs containerd's API protos.
DEFAULT_PROTO_DIR = "/usr/share/gocode/src/github.com/containerd/containerd/api"
PROTO_DIR_ENV = "NYDUS_CONTAINERD_PROTO_DIR"
#: The API files we use (relative to the api directory); their imports among ``types/`` follow.
PROTOS = (
    "types/mount.proto",
    "types/descriptor.proto",
    "types/platform.proto",
    "services/snapshots/v1/snapshots.proto",
    "services/content/v1/content.proto",
    "services/images/v1/images.proto",
    "services/leases/v1/leases.proto",
    "services/version/v1/version.proto",
    "services/diff/v1/diff.proto",
)
PACKAGE = "nydus_snapshotter_containerd"
GEN = "_gen"
_API_IMPORT = "github.com/containerd/containerd/api/"
_GOGO_IMPORT = re.compile(r'^\s*import\s+(?:weak\s+|public\s+)?"gogoproto/gogo\.proto"\s*;\s*$', re.M)
_GOGO_OPTION_LINE = re.compile(r"^\s*option\s+\(gogoproto\.[^)]*\)\s*=\s*[^;]*;\s*$", re.M)
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_IMPORT = re.compile(r'^(\s*import\s+(?:weak\s+|public\s+)?")([^"]+)(";)', re.M)


class ProtoGenError(RuntimeError):
    """The protos are missing or protoc failed."""


def proto_dir() -> Path:
    """Return the directory holding containerd's ``api`` protos; ProtoGenError naming the fix if absent."""
    d = Path(os.environ.get(PROTO_DIR_ENV) or DEFAULT_PROTO_DIR)
    if not (d / "services/snapshots/v1/snapshots.proto").is_file():
        raise ProtoGenError(
            f"{d}: containerd API protos not found (apt-get install golang-github-containerd-containerd-dev, "
            f"or set {PROTO_DIR_ENV})")
    return d


def _strip_brackets(match: re.Match[str]) -> str:
    items = [p.strip() for p in match.group(1).split(",")]
    kept = [p for p in items if p and not p.startswith("(gogoproto.")]
    return f"[{', '.join(kept)}]" if kept else ""


def strip_gogo(text: str) -> str:
    """Return a proto's text without the gogoproto import and options, imports moved under ``_gen``."""
    text = _GOGO_IMPORT.sub("", text)
    text = _GOGO_OPTION_LINE.sub("", text)
    text = _BRACKET.sub(_strip_brackets, text)

    def imp(m: re.Match[str]) -> str:
        path = m.group(2)
        if path.startswith(_API_IMPORT):
            path = f"{PACKAGE}/{GEN}/containerd/{path[len(_API_IMPORT):]}"
        return f"{m.group(1)}{path}{m.group(3)}"

    text = _IMPORT.sub(imp, text)
    if "gogoproto" in text:
        raise ProtoGenError("a gogoproto option was left after stripping")
    return text


def generate(out_root: str | os.PathLike[str], source: str | os.PathLike[str] | None = None) -> Path:
    """Write the stubs into ``out_root/nydus_snapshotter_containerd/_gen``; return that directory.

    ``out_root`` is the directory that holds the package (the plugin's source directory).
    """
    import grpc_tools
    from grpc_tools import protoc

    src = Path(source) if source is not None else proto_dir()
    out_root = Path(out_root)
    target = out_root / PACKAGE / GEN
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="nydus-protos-") as tmp:
        tree = Path(tmp)
        rels = []
        for rel in PROTOS:
            f = src / rel
            if not f.is_file():
                raise ProtoGenError(f"{f}: missing containerd API proto")
            dest_rel = f"{PACKAGE}/{GEN}/containerd/{rel}"
            dest = tree / dest_rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(strip_gogo(f.read_text()))
            rels.append(dest_rel)
        staging = Path(tmp) / "out"
        staging.mkdir()
        args = ["grpc_tools.protoc", f"-I{tree}", f"-I{well_known}", f"--python_out={staging}",
                f"--pyi_out={staging}", f"--grpc_python_out={staging}", *rels]
        if protoc.main(args) != 0:
            raise ProtoGenError(f"protoc failed on containerd's protos from {src}")
        built = staging / PACKAGE / GEN
        for d in [built, *[p for p in built.rglob("*") if p.is_dir()]]:
            (d / "__init__.py").touch()
        (built / "__init__.py").write_text(
            '"""Stubs generated from containerd\'s API protos by stubgen.py at build time."""\n')
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(built, target)
    return target


_GRPC_GENERATED = re.compile(r"^GRPC_GENERATED_VERSION = '([0-9.]+)'$", re.M)
_PROTOBUF_GENERATED = re.compile(r"^# Protobuf Python Version: ([0-9.]+)$", re.M)


def generated_versions(target: str | os.PathLike[str]) -> dict[str, str]:
    """Return the least ``grpcio`` and ``protobuf`` versions the stubs in ``target`` import with.

    Generated code checks these itself on import (and refuses older runtimes), so the package's
    dependencies must not allow anything older.
    """
    found: dict[str, set[str]] = {"grpcio": set(), "protobuf": set()}
    for path in Path(target).rglob("*.py"):
        text = path.read_text()
        found["grpcio"].update(_GRPC_GENERATED.findall(text))
        found["protobuf"].update(_PROTOBUF_GENERATED.findall(text))
    out = {}
    for name, versions in found.items():
        if len(versions) > 1:
            raise ProtoGenError(f"stubs in {target} were made for several {name} versions: "
                                f"{sorted(versions)}")
        if versions:
            out[name] = versions.pop()
    return out


def bound_problems(generated: dict[str, str], dependencies: list[str]) -> list[str]:
    """Say where the run-time ``dependencies`` allow a grpcio/protobuf the stubs would refuse."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    reqs = {r.name.lower(): r for r in map(Requirement, dependencies)}
    problems = []
    for name, made_for in sorted(generated.items()):
        req = reqs.get(name)
        least = Version(made_for)
        if req is None:
            problems.append(f"the stubs import {name} (>= {made_for}) but the package does not depend on it")
            continue
        lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
        if not lows or max(lows) < least:
            problems.append(f"the stubs need {name}>={made_for} but the package declares '{req}'")
        if name == "protobuf" and not req.specifier.contains(made_for):
            problems.append(f"protobuf {made_for}, which made the stubs, is outside '{req}'")
        if name == "protobuf" and Version(f"{least.major + 1}") in req.specifier:
            problems.append(f"'{req}' allows protobuf {least.major + 1}, whose runtime refuses stubs made "
                            f"by protobuf {least.major}.x")
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python stubgen.py [PROTO_DIR]``: regenerate the stubs in the source tree."""
    args = sys.argv[1:] if argv is None else argv
    out_root = Path(__file__).resolve().parent
    try:
        where = generate(out_root, args[0] if args else None)
    except ProtoGenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"generated {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
