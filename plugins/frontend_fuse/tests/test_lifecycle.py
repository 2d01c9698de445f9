"""nydusd as a daemon: start-up errors are one line, signals and the exit API unmount, a killed
daemon leaves a mountpoint that fusermount3 cleans and that the next start explains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from nydus_testsupport.fixtures import require_upstream
from nydus_testsupport.fuse import NydusdProcess, script

from nydus_core.mounts import force_unmount, mounts_at

V6 = "rafs-v6/rafs-v6-2.2.boot"


def run_nydusd(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([script("nydusd"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode != 0
    err = res.stderr.strip()
    assert err and "\n" not in err, res.stderr
    assert "Traceback" not in err
    return err


def v6_args() -> list[object]:
    up = require_upstream()
    return ["-D", up / "rafs-v6/blobs", "-B", up / V6]


def test_missing_mountpoint_is_one_line(tmp_path: Path) -> None:
    err = one_line_error(run_nydusd("-M", tmp_path / "nope", *v6_args()))
    assert "nope" in err and "does not exist" in err


def test_mountpoint_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    err = one_line_error(run_nydusd("-M", f, *v6_args()))
    assert "not a directory" in err


def test_missing_bootstrap_and_missing_config(tmp_path: Path) -> None:
    err = one_line_error(run_nydusd("-M", tmp_path, "-D", tmp_path, "-B", tmp_path / "boot"))
    assert "boot" in err and "not found" in err
    up = require_upstream()
    err = one_line_error(run_nydusd("-M", tmp_path, "-B", up / V6))
    assert "-C/--config" in err
    err = one_line_error(run_nydusd("-B", up / V6, "-D", tmp_path))
    assert "--mountpoint" in err


def test_bad_configs_name_the_file_and_key(tmp_path: Path) -> None:
    up = require_upstream()
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"device": {')
    err = one_line_error(run_nydusd("-M", tmp_path, "-C", bad_json, "-B", up / V6))
    assert "bad.json" in err
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"device": {"backend": {"type": "nosuch", "config": {}}}}))
    err = one_line_error(run_nydusd("-M", tmp_path, "-C", unknown, "-B", up / V6))
    assert "unknown.json" in err and "nosuch" in err and "device.backend.type" in err
    fscache = tmp_path / "fscache.json"
    backend = {"type": "localfs", "config": {"dir": str(tmp_path)}}
    fscache.write_text(json.dumps({"device": {"backend": backend, "cache": {"type": "fscache"}}}))
    err = one_line_error(run_nydusd("-M", tmp_path, "-C", fscache, "-B", up / V6))
    assert "fscache" in err
    assert not mounts_at(tmp_path)


def test_not_a_bootstrap(tmp_path: Path) -> None:
    junk = tmp_path / "junk.boot"
    junk.write_bytes(b"\0" * 8192)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    err = one_line_error(run_nydusd("-M", mnt, "-D", tmp_path, "-B", junk))
    assert "junk.boot" in err
    assert not mounts_at(mnt)


def test_unsupported_modes_are_refused(tmp_path: Path) -> None:
    err = one_line_error(run_nydusd("-M", tmp_path, "-D", tmp_path, "--writable"))
    assert "--writable" in err
    err = one_line_error(run_nydusd("virtiofs", "--sock", tmp_path / "s"))
    assert "virtiofs" in err
    err = one_line_error(run_nydusd("-M", tmp_path, "-C", tmp_path / "c.json", "-D", tmp_path))
    assert "conflicts" in err


def test_sigterm_sigint_and_exit_api_unmount(need_fuse: None, tmp_path: Path) -> None:
    sock = tmp_path / "api.sock"
    for how in ("SIGTERM", "SIGINT", "api"):
        d = NydusdProcess(tmp_path / "mnt", v6_args(), apisock=sock)
        (tmp_path / "mnt").mkdir(exist_ok=True)
        try:
            d.start()
            assert (tmp_path / "mnt" / "lib.rs").stat().st_size == 16931
            if how == "api":
                assert d.api.call("PUT", "/api/v1/daemon/exit") is None
            else:
                d.signal(getattr(signal, how))
            assert d.wait(20) == 0, d.output()
            assert not mounts_at(tmp_path / "mnt"), how
            assert not sock.exists(), "the API socket is removed on exit"
            assert "Traceback" not in d.output()
        finally:
            d.close()


def test_fuse_subcommand_form_and_global_flags_anywhere(need_fuse: None, tmp_path: Path) -> None:
    log = tmp_path / "daemon"  # upstream appends .log when there is no extension
    (tmp_path / "mnt").mkdir()
    with NydusdProcess(tmp_path / "mnt", ["fuse", *v6_args(), "--log-level", "debug", "-L", log],
                       command=[script("nydusd"), "--id", "d1", "-A", tmp_path / "a.sock"]) as d:
        d.apisock = str(tmp_path / "a.sock")
        info = d.api.call("GET", "/api/v1/daemon")
        assert info["id"] == "d1" and info["state"] == "RUNNING"
        assert set(info["backend_collection"]) == {"/"}
    assert "serving" in (tmp_path / "daemon.log").read_text()


def test_already_mounted_is_refused(need_fuse: None, tmp_path: Path) -> None:
    with NydusdProcess(tmp_path, v6_args()):
        err = one_line_error(run_nydusd("-M", tmp_path, *v6_args()))
        assert "already a mountpoint" in err and "fusermount3 -u" in err
        assert (tmp_path / "lib.rs").exists(), "the first mount still serves"


def test_killed_daemon_leaves_a_cleanable_mountpoint(need_fuse: None, tmp_path: Path) -> None:
    d = NydusdProcess(tmp_path, v6_args()).start()
    try:
        d.signal(signal.SIGKILL)
        d.wait(20)
        with pytest.raises(OSError) as exc:
            os.stat(tmp_path / "lib.rs")
        assert exc.value.errno == 107  # ENOTCONN
        err = one_line_error(run_nydusd("-M", tmp_path, *v6_args()))
        assert "Transport endpoint is not connected" in err and f"fusermount3 -u {tmp_path}" in err
        subprocess.run(["fusermount3", "-u", str(tmp_path)], check=True)
        with NydusdProcess(tmp_path, v6_args()):
            assert (tmp_path / "sync_io.rs").stat().st_size == 13400
    finally:
        d.close()
        force_unmount(tmp_path)


def test_without_bootstrap_serves_an_empty_root(need_fuse: None, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with NydusdProcess(tmp_path / "m", ["-D", tmp_path], apisock=tmp_path / "s.sock") as d:
        assert os.listdir(d.mountpoint) == []
        assert os.stat(d.mountpoint).st_ino == 1
        assert d.api.call("GET", "/api/v1/daemon")["backend_collection"] == {}


def test_virtual_mountpoint_puts_the_image_under_a_sub_path(need_fuse: None, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with NydusdProcess(tmp_path / "m", [*v6_args(), "-m", "/images/one"], apisock=tmp_path / "s.sock") as d:
        assert os.listdir(tmp_path / "m") == ["images"]
        assert sorted(os.listdir(tmp_path / "m" / "images" / "one")) == ["lib.rs", "sync_io.rs"]
        assert (tmp_path / "m" / "images" / "one" / "lib.rs").stat().st_size == 16931
        assert set(d.api.call("GET", "/api/v1/daemon")["backend_collection"]) == {"/images/one"}
