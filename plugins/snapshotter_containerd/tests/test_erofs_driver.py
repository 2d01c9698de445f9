"""``fs_driver = "erofs"``: the snapshotter's nydusd serves images with the kernel's EROFS driver
(the lowest ``lowerdir`` of a container's overlay is an ``erofs`` mount); ``ctr run`` through it
leaves no mount; an image EROFS cannot serve falls back to fusedev with a reason."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nydus_snapshotter_containerd.nydusd import erofs_refusal
from nydus_testsupport.containerd import ContainerdEnv, containerd_unavailable, push_nydus_image
from nydus_testsupport.fixtures import require_upstream

from nydus_core.mounts import mounts_under

RUN = os.getpid()


def _erofs_unavailable() -> str | None:
    from nydus_frontend_fuse.erofs_mount import erofs_unavailable

    return erofs_unavailable()


def test_v5_images_are_served_with_fusedev_and_say_why() -> None:
    up = require_upstream()
    why = erofs_refusal(up / "rafs-v5/sha256-nocompress-repeatable")
    assert why is not None and "RAFS v5" in why
    if _erofs_unavailable() is None:
        assert erofs_refusal(up / "rafs-v6/rafs-v6-2.2.boot") is None


def test_ctr_run_with_the_erofs_driver(tmp_path: Path, registry_open, rootfs: Path) -> None:
    reason = containerd_unavailable() or _erofs_unavailable()
    if reason:
        pytest.skip(reason)
    data = tmp_path / "data"
    (data / "etc").mkdir(parents=True)
    (data / "etc" / "motd").write_text("served by kernel erofs\n")
    host = registry_open.server.host
    with registry_open.client() as c:
        push_nydus_image(c, host, "erofs/run", "v1", [rootfs, data])
    ref = f"{host}/erofs/run:v1"
    env = ContainerdEnv(tmp_path / "cd", plain_http=[host], daemon_mode="dedicated",
                        config_text='[daemon]\nfs_driver = "erofs"\n')
    try:
        env.start()
        nydus = str(Path(sys.executable).with_name("nydus"))
        res = subprocess.run([nydus, "containerd", "pull", "--address", str(env.containerd.address),
                              "--plain-http", ref], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr + env.logs()
        root = env.snapshotter.root
        run = env.ctr("run", "--rm", "--snapshotter", "nydus", ref, f"erofs-{RUN}", "/bin/cat", "/etc/motd",
                      check=False)
        assert run.returncode == 0 and run.stdout == "served by kernel erofs\n", run.stderr + env.logs()
        assert "--fs-driver erofs" in env.snapshotter.log()
        logs = "".join(p.read_text(errors="replace") for p in (root / "logs").glob("*/nydusd.log*"))
        assert "with the erofs driver" in logs, logs
        deadline = time.monotonic() + 30
        while (list((root / "socket").iterdir()) or mounts_under(root)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not list((root / "socket").iterdir()) and not mounts_under(root), env.logs()
        env.ctr("images", "rm", "--sync", ref)
    finally:
        env.stop()
