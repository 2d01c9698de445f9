"""Failover of an ``erofs``-driver nydusd: SIGKILL it while a reader loops over a large file with its
page cache dropped; the supervisor keeps the ``/dev/fuse`` descriptor, a new ``nydusd --upgrade``
takes over (``FUSE_NOTIFY_RESEND`` re-queues what the dead one had read) and the reader never sees
an error, the bytes always right. The same for a live upgrade (take over, then kill the old one)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from nydus_frontend_fuse.ctl import ApiClient
from nydus_frontend_fuse.failover import Supervisor
from nydus_testsupport.fuse import fuse_unavailable, script
from nydus_testsupport.looping_reader import LoopingReader

from nydus_core.builder import BuildOptions, build
from nydus_core.mounts import force_unmount, mounts_under

SIZE = 24 << 20


@pytest.fixture(autouse=True)
def need_erofs() -> None:
    reason = fuse_unavailable()
    if not reason:
        from nydus_frontend_fuse.erofs_mount import erofs_unavailable

        reason = erofs_unavailable()
    if reason:
        pytest.skip(reason)


def _daemon(argv: list[str], sock: Path, log: Path) -> tuple[subprocess.Popen[bytes], ApiClient]:
    err = log.with_suffix(".err")
    with open(err, "wb") as fh:
        proc = subprocess.Popen([*argv, "--apisock", str(sock), "--log-file", str(log), "--log-level",
                                 "debug"], stdin=subprocess.DEVNULL, stdout=fh, stderr=fh)
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    return proc, ApiClient(str(sock), timeout=30)


def _state(api: ApiClient) -> str:
    return str(api.call("GET", "/api/v1/daemon")["state"])


def _wait_state(api: ApiClient, want: str) -> None:
    deadline = time.monotonic() + 30
    while _state(api) != want:
        assert time.monotonic() < deadline, f"daemon never {want}"
        time.sleep(0.05)


@pytest.mark.parametrize("policy", ["resend", "flush"])
def test_kill_and_upgrade_while_reading(tmp_path: Path, policy: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(SIZE)
    (src / "big.bin").write_bytes(data)
    boot, blobs = tmp_path / "img.boot", tmp_path / "blobs"
    build(src, "dir-rafs", bootstrap=boot, blob_dir=blobs, options=BuildOptions(fs_version=6))
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"device": {"backend": {"type": "localfs", "config": {"dir": str(blobs)}},
                                          "cache": {"type": "blobcache",
                                                    "config": {"work_dir": str(tmp_path / "cache")}}},
                               "mode": "direct"}))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sup = Supervisor(tmp_path / "sup.sock")
    argv = [script("nydusd"), "--fs-driver", "erofs", "-M", str(mnt), "-B", str(boot), "-C", str(cfg),
            "--supervisor", sup.path, "--id", "img", "--failover-policy", policy]
    procs: list[subprocess.Popen[bytes]] = []
    reader = LoopingReader(mnt / "big.bin", hashlib.sha256(data).hexdigest())
    try:
        p1, api1 = _daemon(argv, tmp_path / "a1.sock", tmp_path / "d1.log")
        procs.append(p1)
        _wait_state(api1, "RUNNING")
        assert sup.wait_state("img"), "the daemon did not send its state"
        reader.start()
        reader.wait_rounds(1)

        # -- failover: SIGKILL the daemon mid-read; the supervisor hands its connection over
        p1.send_signal(signal.SIGKILL)
        p1.wait()
        p2, api2 = _daemon([*argv, "--upgrade"], tmp_path / "a2.sock", tmp_path / "d2.log")
        procs.append(p2)
        assert _state(api2) == "INIT"
        n = sup.count("img")
        api2.call("PUT", "/api/v1/daemon/fuse/takeover")
        api2.call("PUT", "/api/v1/daemon/start")
        assert _state(api2) == "RUNNING" and sup.wait_state("img", newer_than=n)
        reader.wait_rounds(2)
        if policy == "resend":
            assert reader.errors == [], reader.errors[:3]
        else:  # flush: requests in flight at the kill may fail once, nothing after
            assert len(reader.errors) <= 1, reader.errors[:3]
        errors_after_failover = len(reader.errors)

        # -- live upgrade: a third daemon takes over while the second serves (the second is ended by
        # the takeover, before the third starts serving)
        p3, api3 = _daemon([*argv, "--upgrade"], tmp_path / "a3.sock", tmp_path / "d3.log")
        procs.append(p3)
        api3.call("PUT", "/api/v1/daemon/fuse/takeover")
        assert p2.wait(10) == -signal.SIGKILL
        reader.wait_rounds(3)
        reader.stop.set()
        reader.join(60)
        assert len(reader.errors) == errors_after_failover, reader.errors[:3]
        assert "took over" in (tmp_path / "d3.log").read_text()

        # the last daemon unmounts everything on exit (it owns the mounts it took over)
        api3.call("PUT", "/api/v1/daemon/exit")
        p3.wait(30)
        sup.close()
        assert not mounts_under(tmp_path), mounts_under(tmp_path)
    finally:
        reader.stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        sup.close()
        for mp in mounts_under(tmp_path):
            force_unmount(mp)
        # under a supervisor no reaper runs: a failed takeover leaves the blob devices of the first
        # daemon mounted (a dead connection); remove them
        for p in procs:
            for mp in Path("/run/nydusd").glob(f"blobdev-{p.pid}-*"):
                force_unmount(mp)
                with contextlib.suppress(OSError):
                    mp.rmdir()
