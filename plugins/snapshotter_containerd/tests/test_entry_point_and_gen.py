"""Wiring: the entry point and console scripts; the stubs come from containerd's own protos, at
build time only (stubgen.py, outside the package, run by the hatch hook)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path
from types import ModuleType

import pytest
from nydus_testkit.cli import nydus_plugins_json, plugin_record

PLUGIN_DIR = Path(__file__).resolve().parents[1]


def _load_stubgen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_test_stubgen", PLUGIN_DIR / "stubgen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_stubgen()


def test_listed_by_nydus_plugins() -> None:
    record = plugin_record(nydus_plugins_json(), "snapshotter-containerd")
    assert record["distribution"] == "nydus-snapshotter-containerd"
    assert record["version"] == version("nydus-snapshotter-containerd")
    assert record["module"] == "nydus_snapshotter_containerd.hooks"
    assert record["error"] is None and record["disabled"] is False
    assert record["provides"] == {"command": ["containerd"]}


def test_console_scripts() -> None:
    bindir = Path(sys.executable).parent
    out = subprocess.run([str(bindir / "containerd-nydus-grpc"), "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "proxy snapshotter" in out
    out = subprocess.run([str(bindir / "nydus"), "containerd", "pull", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--snapshotter" in out


def test_strip_gogo_keeps_the_schema() -> None:
    text = '''syntax = "proto3";
import weak "gogoproto/gogo.proto";
import "github.com/containerd/containerd/api/types/mount.proto";
enum Kind {
\toption (gogoproto.goproto_enum_prefix) = false;
\tVIEW = 1 [(gogoproto.enumvalue_customname) = "KindView"];
}
message M {
\tstring digest = 2 [(gogoproto.customtype) = "x.Digest", (gogoproto.nullable) = false];
\tint64 size = 3 [deprecated = true, (gogoproto.nullable) = false];
}
'''
    out = gen.strip_gogo(text)
    assert "gogoproto" not in out
    assert 'import "nydus_snapshotter_containerd/_gen/containerd/types/mount.proto";' in out
    assert "VIEW = 1 ;" in out or "VIEW = 1;" in out
    assert "string digest = 2 ;" in out or "string digest = 2;" in out
    assert "int64 size = 3 [deprecated = true];" in out


def test_generate_from_the_debian_protos(tmp_path: Path) -> None:
    try:
        src = gen.proto_dir()
    except gen.ProtoGenError as exc:
        pytest.skip(str(exc))
    where = gen.generate(tmp_path, src)
    (tmp_path / gen.PACKAGE / "__init__.py").touch()  # shadows the installed package in the child
    assert (where / "containerd" / "services" / "snapshots" / "v1" / "snapshots_pb2_grpc.py").is_file()
    code = ("from nydus_snapshotter_containerd._gen.containerd.services.snapshots.v1 "
            "import snapshots_pb2 as s\n"
            "f = s.Info.DESCRIPTOR.fields_by_name\n"
            "print(f['name'].number, f['kind'].number, f['labels'].number, s.COMMITTED, s.__file__)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=False, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    *numbers, origin = res.stdout.split()
    assert numbers == ["1", "3", "6", "3"]  # field numbers as in containerd's snapshots.proto
    assert origin.startswith(str(tmp_path))


def test_missing_protos_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gen.PROTO_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(gen.ProtoGenError, match="golang-github-containerd-containerd-dev"):
        gen.proto_dir()


def _package_copy(tmp_path: Path) -> Path:
    """A copy of the installed package (stubs included) in ``tmp_path``, to break on purpose."""
    import shutil

    import nydus_snapshotter_containerd

    copy = tmp_path / gen.PACKAGE
    shutil.copytree(Path(nydus_snapshotter_containerd.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _import_snapshots(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = ("from nydus_snapshotter_containerd.api import snapshots_pb2 as s\n"
            "print(s.Info.DESCRIPTOR.fields_by_name['labels'].number, s.__file__)\n")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          check=False, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_installed_stubs_import_without_grpcio_tools(tmp_path: Path) -> None:
    """The stubs are in the package; grpcio-tools is not a run-time dependency, and without it (made
    unimportable in the child) the stubs load."""
    assert not any(r.startswith("grpcio-tools") for r in requires("nydus-snapshotter-containerd") or [])
    code = ("import sys\n"
            "sys.modules['grpc_tools'] = None  # as if grpcio-tools were not installed\n"
            "from nydus_snapshotter_containerd.api import snapshots_grpc, version_pb2\n"
            "print(snapshots_grpc.SnapshotsStub.__name__, version_pb2.DESCRIPTOR.package)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["SnapshotsStub", "containerd.services.version.v1"]


def test_missing_stubs_are_a_clear_error(tmp_path: Path) -> None:
    import shutil

    copy = _package_copy(tmp_path)
    shutil.rmtree(copy / gen.GEN)
    res = _import_snapshots(tmp_path)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert "ProtoUnavailableError: containerd API stubs are missing from this installation" in last
    assert "golang-github-containerd-containerd-dev" in last
    assert not (copy / gen.GEN).exists()  # nothing is generated at run time


def test_stubs_that_refuse_the_installed_runtime_are_a_clear_error(tmp_path: Path) -> None:
    copy = _package_copy(tmp_path)
    stub = copy / gen.GEN / "containerd" / "services" / "snapshots" / "v1" / "snapshots_pb2.py"
    stub.write_text('raise RuntimeError("generated code depends on grpcio>=99")\n')
    res = _import_snapshots(tmp_path)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1].endswith(
        "ProtoUnavailableError: containerd API stubs refuse to load: generated code depends on grpcio>=99")


def test_declared_bounds_match_the_stubs() -> None:
    """The build hook's check: the stubs of this installation against its declared dependencies."""
    import nydus_snapshotter_containerd

    made_for = gen.generated_versions(Path(nydus_snapshotter_containerd.__file__).parent / gen.GEN)
    assert set(made_for) == {"grpcio", "protobuf"}
    assert gen.bound_problems(made_for, requires("nydus-snapshotter-containerd") or []) == []
    assert gen.bound_problems({"grpcio": "1.85.1", "protobuf": "7.35.1"},
                              ["grpcio>=1.60", "protobuf>=7.35.1"]) == [
        "the stubs need grpcio>=1.85.1 but the package declares 'grpcio>=1.60'",
        "'protobuf>=7.35.1' allows protobuf 8, whose runtime refuses stubs made by protobuf 7.x",
    ]
