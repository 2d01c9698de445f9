"""Wiring: the entry point and console scripts; the stubs come from containerd's own protos."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from nydus_snapshotter_containerd import gen
from nydus_testkit.cli import nydus_plugins_json, plugin_record


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


def test_stubs_that_refuse_to_import_are_regenerated(tmp_path: Path) -> None:
    """Stubs from a newer grpcio-tools fail their version check at import: they are made again."""
    import shutil

    try:
        gen.proto_dir()
    except gen.ProtoGenError as exc:
        pytest.skip(str(exc))
    pkg = Path(gen.__file__).parent
    copy = tmp_path / gen.PACKAGE
    shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("__pycache__"))
    stub = copy / gen.GEN / "containerd" / "services" / "snapshots" / "v1" / "snapshots_pb2.py"
    stub.write_text('raise RuntimeError("generated code depends on grpcio>=99")\n')
    code = ("from nydus_snapshotter_containerd.api import snapshots_pb2 as s\n"
            "print(s.Info.DESCRIPTOR.fields_by_name['labels'].number, s.__file__)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=False, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    number, origin = res.stdout.split()
    assert number == "6" and origin == str(stub)
    assert "RuntimeError" not in stub.read_text()
