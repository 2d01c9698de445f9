"""``daemon.recover_policy``: ``restart`` brings a SIGKILLed nydusd back by itself (both daemon modes,
both drivers: with ``erofs`` the killed daemon's reaper removes its EROFS mount first); ``none``
leaves it dead. As upstream, a container already standing on the dead FUSE session sees
errors; new mounts of the same snapshot read through the new daemon."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
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

from nydus_core.mounts import force_unmount, is_mountpoint, mounts_at


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


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except OSError:
        return False


def _wait(pred, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("mode, policy, driver", [
    ("dedicated", "restart", "fusedev"), ("shared", "restart", "fusedev"), ("dedicated", "none", "fusedev"),
    ("dedicated", "restart", "erofs"), ("shared", "restart", "erofs")])
def test_recover_policy(mode: str, policy: str, driver: str, tmp_path: Path, registry_open) -> None:
    reason = containerd_unavailable()
    if reason is None and driver == "erofs":
        from nydus_frontend_fuse.erofs_mount import erofs_unavailable

        reason = erofs_unavailable()
    if reason:
        pytest.skip(reason)
    layer = tmp_path / "layer"
    (layer / "d").mkdir(parents=True)
    for i in range(4):
        (layer / "d" / f"f{i}").write_text(f"file {i}\n")
    host = registry_open.server.host
    with registry_open.client() as c:
        img = push_nydus_image(c, host, "recover/app", "v1", [layer])
    text = f'plain_http = ["{host}"]\n[daemon]\nrecover_policy = "{policy}"\nfs_driver = "{driver}"\n'
    sn = SnapshotterProcess(tmp_path / "sn", daemon_mode=mode, config_text=text).start()
    client = SnapshotsClient(sn.address)
    try:
        top = _chain(client, img, f"{host}/recover/app:v1")
        mounts = client.prepare("c1", top)
        lower = Path(dict(o.split("=", 1) for o in mounts[0].options)["lowerdir"])
        fuse_mount = lower if mode == "dedicated" else lower.parent
        want = "erofs" if driver == "erofs" else "fuse.rafs"
        assert [m.fstype for m in mounts_at(str(lower if driver == "erofs" else fuse_mount))][-1:] == [want]
        with _overlay(mounts, tmp_path / "rootfs") as rootfs:
            assert (rootfs / "d" / "f0").read_text() == "file 0\n"
            pid = int(_pid_file(sn.root, mode).read_text())
            os.kill(pid, signal.SIGKILL)
            restarted = _wait(lambda: _pid_file(sn.root, mode).exists()
                              and int(_pid_file(sn.root, mode).read_text()) != pid
                              and is_mountpoint(fuse_mount) and _exists(lower / "d" / "f1"),
                              timeout=20 if policy == "restart" else 3)
            if policy == "none":
                assert not restarted
                assert "died" not in sn.log()
                return
            assert restarted, sn.log()[-3000:]
            assert "recover_policy restart" in sn.log()
            # the new daemon serves the image at the same place, without any call from containerd
            assert (lower / "d" / "f1").read_text() == "file 1\n"
            if driver == "erofs":
                assert [m.fstype for m in mounts_at(str(lower))] == ["erofs"]  # the old one is gone
            # the container that stood on the old session sees errors (upstream's restart, too)
            with pytest.raises(OSError) as info:
                (rootfs / "d" / "f2").read_text()
            assert info.value.errno in (errno.ENOTCONN, errno.EIO, errno.ECONNABORTED)
        # a new mount of the same snapshot (a restarted container) reads through the new daemon
        with _overlay(client.mounts("c1"), tmp_path / "rootfs2") as rootfs:
            assert (rootfs / "d" / "f3").read_text() == "file 3\n"
        client.remove("c1")
    finally:
        client.close()
        sn.stop()
        sn.stop_nydusd()
