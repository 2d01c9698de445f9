"""``daemon_mode = "dedicated"`` (upstream's default): one nydusd per image, with its own API socket,
started with the image's first container snapshot and stopped with its last; ``ctr run`` through it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from nydus_snapshotter_containerd import labels as L
from nydus_testsupport.containerd import (
    ContainerdEnv,
    SnapshotsClient,
    SnapshotterProcess,
    containerd_unavailable,
    push_nydus_image,
)

from nydus_core.mounts import is_mountpoint, mounts_under

RUN = os.getpid()


@pytest.fixture
def dedicated(tmp_path: Path, registry_open) -> Iterator[SnapshotterProcess]:
    reason = containerd_unavailable()
    if reason:
        pytest.skip(reason)
    p = SnapshotterProcess(tmp_path / "sn", daemon_mode="dedicated",
                           config_text=f'plain_http = ["{registry_open.server.host}"]\n').start()
    yield p
    p.stop()
    p.stop_nydusd()


def _push(registry_open, tmp_path: Path, name: str, text: str) -> tuple[object, str]:
    layer = tmp_path / name
    (layer / "dir").mkdir(parents=True)
    (layer / "dir" / "file.txt").write_text(text)
    with registry_open.client() as c:
        img = push_nydus_image(c, registry_open.server.host, f"ded/{name}", "v1", [layer])
    return img, f"{registry_open.server.host}/ded/{name}:v1"


def _chain(client: SnapshotsClient, img, ref: str) -> str:
    from nydus_snapshotter_containerd.pull import chain_ids

    parent = ""
    for layer, chain in zip(img.layers, chain_ids(img.config["rootfs"]["diff_ids"])):
        labels = dict(layer.get("annotations", {}))
        labels.update({L.TARGET_REF: chain, L.IMAGE_REF: ref, L.LAYER_DIGEST: layer["digest"]})
        with pytest.raises(grpc.RpcError) as info:
            client.prepare(f"extract {chain}", parent, labels)
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
        parent = chain
    return parent


def _lower(mounts: list) -> Path:
    opts = dict(o.split("=", 1) for o in mounts[0].options if "=" in o)
    return Path(opts["lowerdir"].split(":")[-1])


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def test_one_daemon_per_image(dedicated: SnapshotterProcess, registry_open, tmp_path: Path) -> None:
    root = dedicated.root
    img_a, ref_a = _push(registry_open, tmp_path, "a", "image a\n")
    img_b, ref_b = _push(registry_open, tmp_path, "b", "image b\n")
    client = SnapshotsClient(dedicated.address)
    try:
        top_a, top_b = _chain(client, img_a, ref_a), _chain(client, img_b, ref_b)
        assert not (root / "socket").exists() or not list((root / "socket").iterdir())  # none yet
        low_a = _lower(client.prepare("ca-1", top_a))
        low_a2 = _lower(client.prepare("ca-2", top_a))
        low_b = _lower(client.prepare("cb-1", top_b))
        assert low_a == low_a2 != low_b
        ids = sorted(p.name for p in (root / "socket").iterdir())
        assert len(ids) == 2
        for i in ids:  # upstream's layout: own mount, API socket, config, log
            assert is_mountpoint(root / "snapshots" / i / "mnt")
            assert (root / "socket" / i / "api.sock").is_socket()
            assert (root / "config" / i / "config.json").stat().st_mode & 0o077 == 0
            assert (root / "logs" / i / "nydusd.log").exists()
        assert {low_a, low_b} == {root / "snapshots" / i / "mnt" for i in ids}
        assert (low_a / "dir" / "file.txt").read_text() == "image a\n"
        assert (low_b / "dir" / "file.txt").read_text() == "image b\n"
        pids = {i: int((root / "socket" / i / "nydusd.pid").read_text()) for i in ids}
        assert len(set(pids.values())) == 2

        # one image's daemon dies: the other image is untouched; Mounts brings the dead one back
        a_id = low_a.parent.name
        b_id = low_b.parent.name
        _kill(pids[a_id])
        assert (low_b / "dir" / "file.txt").read_text() == "image b\n"
        assert int((root / "socket" / b_id / "nydusd.pid").read_text()) == pids[b_id]
        assert _lower(client.mounts("ca-1")) == low_a
        assert (low_a / "dir" / "file.txt").read_text() == "image a\n"
        assert int((root / "socket" / a_id / "nydusd.pid").read_text()) != pids[a_id]

        # the snapshotter restarts: it reconnects to both daemons
        before = {i: (root / "socket" / i / "nydusd.pid").read_text() for i in ids}
        dedicated.stop()
        dedicated.start()
        assert {i: (root / "socket" / i / "nydusd.pid").read_text() for i in ids} == before

        # the image's last container snapshot goes: its daemon stops, the other keeps running
        client.close()
        client = SnapshotsClient(dedicated.address)
        client.remove("ca-1")
        assert is_mountpoint(low_a)
        client.remove("ca-2")
        assert not is_mountpoint(low_a) and not (root / "socket" / a_id).exists()
        assert not (root / "config" / a_id).exists()
        assert is_mountpoint(low_b)
        client.remove("cb-1")
        assert not mounts_under(root) and not list((root / "socket").iterdir())
    finally:
        client.close()


def _nydus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).with_name("nydus")), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_ctr_run_in_dedicated_mode(tmp_path: Path, registry_open, rootfs: Path) -> None:
    reason = containerd_unavailable()
    if reason:
        pytest.skip(reason)
    data = tmp_path / "data"
    (data / "etc").mkdir(parents=True)
    (data / "etc" / "motd").write_text("dedicated nydusd\n")
    host = registry_open.server.host
    with registry_open.client() as c:
        push_nydus_image(c, host, "ded/run", "v1", [rootfs, data])
    ref = f"{host}/ded/run:v1"
    env = ContainerdEnv(tmp_path / "cd", plain_http=[host], daemon_mode="dedicated")
    try:
        env.start()
        res = _nydus("containerd", "pull", "--address", str(env.containerd.address), "--plain-http", ref)
        assert res.returncode == 0, res.stderr + env.logs()
        root = env.snapshotter.root
        run = env.ctr("run", "--rm", "--snapshotter", "nydus", ref, f"ded-{RUN}", "/bin/cat", "/etc/motd",
                      check=False)
        assert run.returncode == 0 and run.stdout == "dedicated nydusd\n", run.stderr + env.logs()
        assert "starting nydusd" in env.snapshotter.log() and "--bootstrap" in env.snapshotter.log()
        # the container is gone: so is its image's daemon (no socket dir, no FUSE mount)
        deadline = time.monotonic() + 30
        while (list((root / "socket").iterdir()) or mounts_under(root)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not list((root / "socket").iterdir()) and not mounts_under(root), env.logs()
        env.ctr("images", "rm", "--sync", ref)
    finally:
        env.stop()
