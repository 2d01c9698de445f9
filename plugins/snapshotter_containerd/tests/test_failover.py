"""``recover_policy = "failover"`` with ``fs_driver = "erofs"`` (dedicated and shared): nydusd is
SIGKILLed while a reader loops over a large file of the image through a container's overlay with its
page cache dropped each round; the snapshotter (the supervisor, holding the ``/dev/fuse``
descriptor) starts ``nydusd --upgrade`` which takes the connection over; the reader sees no error
and always the right bytes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from nydus_snapshotter_containerd import labels as L
from nydus_testsupport.containerd import (
    SnapshotsClient,
    SnapshotterProcess,
    containerd_unavailable,
    push_nydus_image,
)
from nydus_testsupport.looping_reader import LoopingReader

from nydus_core.mounts import force_unmount

SIZE = 8 << 20


def _unavailable() -> str | None:
    reason = containerd_unavailable()
    if reason:
        return reason
    from nydus_frontend_fuse.erofs_mount import erofs_unavailable

    return erofs_unavailable()


def _chain(client: SnapshotsClient, img, ref: str) -> str:
    from nydus_snapshotter_containerd.pull import chain_ids

    parent = ""
    for layer, chain in zip(img.layers, chain_ids(img.config["rootfs"]["diff_ids"])):
        labels = dict(layer.get("annotations", {}))
        labels.update({L.TARGET_REF: chain, L.IMAGE_REF: ref, L.LAYER_DIGEST: layer["digest"]})
        with pytest.raises(grpc.RpcError):
            client.prepare(f"extract {chain}", parent, labels)
        parent = chain
    return parent


@contextlib.contextmanager
def _overlay(mounts: list, target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", ",".join(mounts[0].options), str(target)],
                   check=True)
    try:
        yield target
    finally:
        force_unmount(target)


def _pid_file(root: Path, mode: str) -> Path:
    if mode == "shared":
        return root / "nydusd.pid"
    (sock_dir,) = list((root / "socket").iterdir())
    return sock_dir / "nydusd.pid"


@pytest.mark.parametrize("mode", ["dedicated", "shared"])
def test_sigkill_while_reading(mode: str, tmp_path: Path, registry_open) -> None:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    layer = tmp_path / "layer"
    (layer / "data").mkdir(parents=True)
    data = os.urandom(SIZE)
    (layer / "data" / "big.bin").write_bytes(data)
    host = registry_open.server.host
    with registry_open.client() as c:
        img = push_nydus_image(c, host, f"failover/{mode}", "v1", [layer])
    system_sock = tmp_path / "system.sock"
    text = (f'plain_http = ["{host}"]\n[daemon]\nfs_driver = "erofs"\nrecover_policy = "failover"\n'
            f'failover_policy = "resend"\n[system]\nenable = true\naddress = "{system_sock}"\n')
    sn = SnapshotterProcess(tmp_path / "sn", daemon_mode=mode, config_text=text).start()
    client = SnapshotsClient(sn.address)
    reader: LoopingReader | None = None
    try:
        top = _chain(client, img, f"{host}/failover/{mode}:v1")
        mounts = client.prepare("c1", top)
        with _overlay(mounts, tmp_path / "rootfs") as rootfs:
            reader = LoopingReader(rootfs / "data" / "big.bin", hashlib.sha256(data).hexdigest())
            reader.start()
            reader.wait_rounds(1)
            for kill in range(2):  # twice: the new daemon sent its state too
                if kill == 1:  # and across a snapshotter restart: on start it asks the daemons to send
                    sn.stop()  # their descriptors again (PUT /api/v1/daemon/fuse/sendfd), before serving
                    sn.start()
                pid = int(_pid_file(sn.root, mode).read_text())
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 30
                while int(_pid_file(sn.root, mode).read_text()) == pid:
                    assert time.monotonic() < deadline, sn.log()[-3000:]
                    time.sleep(0.1)
                reader.wait_rounds(2)
                assert reader.errors == [], (reader.errors[:3], sn.log()[-3000:])
            _system_controller(system_sock, sn.root, mode)
            reader.wait_rounds(2)
            reader.stop.set()
            reader.join(60)
            assert reader.errors == [], (reader.errors[:3], sn.log()[-3000:])
            assert "took over its mounts" in sn.log() and "upgraded live" in sn.log()
        client.remove("c1")
    finally:
        if reader is not None:
            reader.stop.set()
        client.close()
        sn.stop()
        sn.stop_nydusd()


def _system_controller(sock: Path, root: Path, mode: str) -> None:
    """Upstream's system controller: the daemon listed with its image, its record, a live upgrade."""
    import sys

    from nydus_frontend_fuse.ctl import ApiClient, ApiError

    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    pid = int(_pid_file(root, mode).read_text())
    with ApiClient(str(sock)) as api:
        (info,) = api.call("GET", "/api/v1/daemons")
        assert info["pid"] == pid and info["memory_rss_kb"] > 0 and info["fs_driver"] == "erofs", info
        assert info["state"] == "RUNNING" and info["reference"] == 1 and info["supervisor_path"], info
        (inst,) = info["instances"].values()
        assert f"failover/{mode}" in inst["image_id"] and Path(inst["mountpoint"]).is_dir(), inst
        (rec,) = api.call("GET", "/api/v1/daemons/records")
        assert rec["pid"] == pid and rec["api_socket_exists"] and rec["id"] == info["id"], rec
        with pytest.raises(ApiError, match="not an executable file"):
            api.call("PUT", "/api/v1/daemons/upgrade", body={"nydusd_path": str(root / "nope")})
        with pytest.raises(ApiError, match="no such endpoint"):
            api.call("GET", "/api/v1/nothing")
        nydusd = str(Path(sys.executable).with_name("nydusd"))
        body = {"nydusd_path": nydusd, "policy": "rolling"}
        (done,) = api.call("PUT", "/api/v1/daemons/upgrade", body=body)
        assert done["old_pid"] == pid and done["pid"] == int(_pid_file(root, mode).read_text()) != pid, done
        (after,) = api.call("GET", "/api/v1/daemons")
        assert after["pid"] == done["pid"] and after["state"] == "RUNNING", after


def _nydus(*args: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([str(Path(sys.executable).with_name("nydus")), *args], capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.parametrize("mode", ["dedicated"])  # shared: test_sigkill_while_reading
def test_container_reads_on_through_failover(mode: str, tmp_path: Path, registry_open, rootfs: Path) -> None:
    """The same with a real container (``ctr run``): its loop of ``sha256sum`` over the image's
    large file, page caches dropped meanwhile, sees no error and the right sum every round."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    from nydus_testsupport.containerd import ContainerdEnv

    data_dir = tmp_path / "data"
    (data_dir / "data").mkdir(parents=True)
    data = os.urandom(SIZE)
    (data_dir / "data" / "big.bin").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    host = registry_open.server.host
    with registry_open.client() as c:
        push_nydus_image(c, host, f"failover/ctr-{mode}", "v1", [rootfs, data_dir])
    ref = f"{host}/failover/ctr-{mode}:v1"
    text = '[daemon]\nfs_driver = "erofs"\nrecover_policy = "failover"\n'
    env = ContainerdEnv(tmp_path / "cd", plain_http=[host], daemon_mode=mode, config_text=text)
    name = f"failover-{mode}-{os.getpid()}"
    stop_dropping = threading.Event()

    def drop_caches() -> None:
        while not stop_dropping.wait(0.3):
            with contextlib.suppress(OSError), open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("1")

    dropper = threading.Thread(target=drop_caches, daemon=True)
    try:
        env.start()
        res = _nydus("containerd", "pull", "--address", str(env.containerd.address), "--plain-http", ref)
        assert res.returncode == 0, res.stderr + env.logs()
        env.ctr("run", "-d", "--snapshotter", "nydus", ref, name, "/bin/sh", "-c",
                "while true; do if sha256sum /data/big.bin > /s; then cat /s >> /out; "
                "else echo ERR >> /out; fi; done")
        root = env.snapshotter.root

        def rounds() -> list[str]:
            outs = list((root / "snapshots").glob("*/fs/out"))
            return outs[0].read_text().splitlines() if outs else []

        def wait_more(n: int) -> None:
            target = len(rounds()) + n
            deadline = time.monotonic() + 60
            while len(rounds()) < target:
                assert time.monotonic() < deadline, rounds()[-3:]
                time.sleep(0.1)

        wait_more(1)
        dropper.start()
        pid = int(_pid_file(root, mode).read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while int(_pid_file(root, mode).read_text()) == pid:
            assert time.monotonic() < deadline, env.logs()
            time.sleep(0.1)
        wait_more(2)
        out = rounds()
        assert out and all(line.split()[0] == want for line in out), [x for x in out if want not in x][:3]
        assert "took over its mounts" in env.snapshotter.log()
    finally:
        stop_dropping.set()
        env.ctr("tasks", "kill", "-s", "SIGKILL", name, check=False)
        for _ in range(100):
            if name not in env.ctr("tasks", "ls", "-q", check=False).stdout.split():
                break
            time.sleep(0.1)
        env.ctr("tasks", "rm", "-f", name, check=False)
        env.ctr("containers", "rm", name, check=False)
        env.stop()


def test_failed_takeover_falls_back_to_restart(tmp_path: Path, registry_open) -> None:
    """A takeover that fails (here ``nydusd --upgrade`` cannot start) ends in a restart: the dead
    daemon's blob devices are detached (no reaper runs under a supervisor), a new daemon serves."""
    import sys

    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    layer = tmp_path / "layer"
    (layer / "d").mkdir(parents=True)
    (layer / "d" / "f").write_text("still here\n")
    host = registry_open.server.host
    with registry_open.client() as c:
        img = push_nydus_image(c, host, "failover/fallback", "v1", [layer])
    wrapper = tmp_path / "nydusd-no-upgrade"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *--upgrade*) exit 3;; esac\n'
                       f'exec {Path(sys.executable).with_name("nydusd")} "$@"\n')
    wrapper.chmod(0o755)
    text = (f'plain_http = ["{host}"]\nnydusd = "{wrapper}"\n[daemon]\nfs_driver = "erofs"\n'
            'recover_policy = "failover"\n')
    sn = SnapshotterProcess(tmp_path / "sn", daemon_mode="dedicated", config_text=text).start()
    client = SnapshotsClient(sn.address)
    try:
        top = _chain(client, img, f"{host}/failover/fallback:v1")
        client.prepare("c1", top)
        pid = int(_pid_file(sn.root, "dedicated").read_text())
        blobdevs = {m for m in Path("/run/nydusd").glob(f"blobdev-{pid}-*")}
        assert blobdevs
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while int(_pid_file(sn.root, "dedicated").read_text()) == pid:
            assert time.monotonic() < deadline, sn.log()[-3000:]
            time.sleep(0.1)
        assert "failover failed" in sn.log() and "served again" in sn.log()
        assert not [m for m in blobdevs if m.exists()], "the dead daemon's blob devices are detached"
        with _overlay(client.mounts("c1"), tmp_path / "rootfs") as rootfs:
            assert (rootfs / "d" / "f").read_text() == "still here\n"
        client.remove("c1")
    finally:
        client.close()
        sn.stop()
        sn.stop_nydusd()
