"""The ``erofs`` driver through the API and the commands: several images in one daemon share one
device per blob; ``fs_driver`` in the mount body; ``nydus mount --fs-driver erofs``."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from nydus_frontend_fuse.ctl import ApiError
from nydus_testsupport.fuse import NydusdProcess, fuse_unavailable, script

from nydus_core.builder import BuildOptions, build
from nydus_core.builder.merge import merge
from nydus_core.mounts import mounts_at, read_mountinfo


@pytest.fixture(autouse=True)
def need_erofs() -> None:
    """Skip when this host has no FUSE or no kernel EROFS (a kernel feature, not ours)."""
    reason = fuse_unavailable()
    if reason is None:
        from nydus_frontend_fuse.erofs_mount import erofs_unavailable

        reason = erofs_unavailable()
    if reason:
        pytest.skip(reason)


def _layer(work: Path, name: str, files: dict[str, bytes]) -> Path:
    src = work / f"src-{name}"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    boot = work / f"{name}.boot"
    build(src, "dir-rafs", bootstrap=boot, blob_dir=work / "blobs",
          options=BuildOptions(chunk_size=0x1000, compressor="zstd"))
    return boot


def _config(work: Path) -> str:
    backend = {"type": "localfs", "config": {"dir": str(work / "blobs")}}
    cache = {"type": "blobcache", "config": {"work_dir": str(work / "cache")}}
    return json.dumps({"device": {"backend": backend, "cache": cache},
                       "mode": "direct", "digest_validate": True, "amplify_io": 0})


def test_two_images_share_one_device_per_blob(tmp_path: Path) -> None:
    base_data = bytes(range(256)) * 64
    base = _layer(tmp_path, "base", {"usr/lib/shared.bin": base_data})
    one, two = (tmp_path / "one.boot", tmp_path / "two.boot")
    merge([base, _layer(tmp_path, "app1", {"app/one": b"first\n"})], bootstrap=one)
    merge([base, _layer(tmp_path, "app2", {"app/two": b"second\n"})], bootstrap=two)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cfg = tmp_path / "daemon.json"
    cfg.write_text(_config(tmp_path))
    with NydusdProcess(mnt, ["-C", cfg, "--fs-driver", "erofs"], apisock=tmp_path / "api.sock") as d:
        assert [m.fstype for m in mounts_at(str(mnt))] == ["tmpfs"]  # holds the images' directories
        api = d.api
        for sub, boot in (("/one", one), ("/two", two)):
            api.call("POST", "/api/v1/mount", {"mountpoint": sub},
                     {"source": str(boot), "fs_type": "rafs", "fs_driver": "erofs",
                      "config": _config(tmp_path)})
        with pytest.raises(ApiError, match="fs_driver 'fusedev'"):
            api.call("POST", "/api/v1/mount", {"mountpoint": "/three"},
                     {"source": str(one), "fs_driver": "fusedev", "config": _config(tmp_path)})
        assert [m.fstype for m in mounts_at(str(mnt / "one"))] == ["erofs"]
        devices = api.call("GET", "/api/v1/metrics/blobs")
        assert len(devices) == 3  # base, app1, app2: the shared blob is one device
        assert sorted(dev["users"] for dev in devices) == [1, 1, 2]
        assert (mnt / "one/usr/lib/shared.bin").read_bytes() == base_data
        assert (mnt / "two/usr/lib/shared.bin").read_bytes() == base_data
        assert (mnt / "one/app/one").read_bytes() == b"first\n"
        assert (mnt / "two/app/two").read_bytes() == b"second\n"
        # the shared blob was fetched once, by the image that registered its device first
        fetched = api.call("GET", "/api/v1/metrics/backend", {"id": "/two"})["read_amount_total"]
        assert fetched < len(base_data)
        api.call("DELETE", "/api/v1/mount", {"mountpoint": "/one"})
        assert mounts_at(str(mnt / "one")) == []
        subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=False)
        assert (mnt / "two/usr/lib/shared.bin").read_bytes() == base_data  # served by /two's pipeline now
        assert sorted(dev["users"] for dev in api.call("GET", "/api/v1/metrics/blobs")) == [1, 1]
        assert d.proc is not None
        pid = d.proc.pid
    assert mounts_at(str(mnt)) == [] and mounts_at(str(mnt / "two")) == []
    assert not [m for m in read_mountinfo() if f"/blobdev-{pid}-" in m.mountpoint]


def test_nydus_mount_background_with_the_erofs_driver(tmp_path: Path) -> None:
    boot = _layer(tmp_path, "img", {"hello.txt": b"hello erofs\n"})
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run([script("nydus"), "mount", str(boot), str(mnt), "-D", str(tmp_path / "blobs"),
                           "--fs-driver", "erofs", "--background"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"umount {mnt}" in proc.stdout
    try:
        assert [m.fstype for m in mounts_at(str(mnt))] == ["erofs"]
        assert (mnt / "hello.txt").read_bytes() == b"hello erofs\n"
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    # the daemon notices the unmount, removes its blob devices and exits
    found = re.search(r"nydusd pid (\d+)", proc.stdout)
    assert found is not None, proc.stdout
    pid = int(found.group(1))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
    assert mounts_at(str(mnt)) == []
    assert not [m for m in read_mountinfo() if f"/blobdev-{pid}-" in m.mountpoint]
