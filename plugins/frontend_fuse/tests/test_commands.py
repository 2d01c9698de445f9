"""The plugin's wiring (entry point, console scripts, ``nydus mount``) and config keys that change
what the mount shows or fetches (enable_xattr, prefetch)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from nydus_frontend_fuse.ctl import ApiClient
from nydus_testkit.samples import random_bytes
from nydus_testsupport.fuse import NydusdProcess, script

from nydus_core.builder import BuildOptions, build
from nydus_core.mounts import force_unmount, mounts_at


def test_entry_point_and_scripts_are_wired() -> None:
    out = subprocess.run([script("nydus"), "plugins", "--json"], capture_output=True, text=True, check=True)
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    me = plugins["frontend-fuse"]
    assert me["distribution"] == "nydus-frontend-fuse" and me["error"] is None
    assert me["provides"] == {"command": ["mount"], "frontend": ["fuse"]}
    for name, words in (("nydusd", ["--bootstrap", "--apisock", "--thread-num", "--prefetch-files"]),
                        ("nydusctl", ["info", "metrics", "mount", "umount"])):
        res = subprocess.run([script(name), "--help"], capture_output=True, text=True, check=True)
        assert all(w in res.stdout for w in words), res.stdout
    res = subprocess.run([script("nydus"), "mount", "--help"], capture_output=True, text=True, check=True)
    assert "BOOTSTRAP MOUNTPOINT" in res.stdout


def _image(tmp: Path, files: dict[str, bytes], prefetch: list[str] | None = None) -> tuple[Path, Path]:
    src = tmp / "src"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    boot, blobs = tmp / "image.boot", tmp / "blobs"
    build(src, "dir-rafs", bootstrap=boot, blob_dir=blobs,
          options=BuildOptions(chunk_size=0x10000, prefetch=prefetch))
    return boot, blobs


def _config(tmp: Path, blobs: Path, **extra: object) -> Path:
    cfg = tmp / "nydusd.json"
    cfg.write_text(json.dumps({"device": {
        "backend": {"type": "localfs", "config": {"dir": str(blobs)}},
        "cache": {"type": "blobcache", "config": {"work_dir": str(tmp / "cache")}}}, **extra}))
    return cfg


def test_nydus_mount_background_read_and_unmount(need_fuse: None, tmp_path: Path) -> None:
    files = {"a/one.bin": random_bytes(1_000_000, 1), "b/two.bin": random_bytes(3_000_000, 2),
             "c/three.txt": b"three\n" * 1000}
    boot, blobs = _image(tmp_path, files)
    cfg = _config(tmp_path, blobs)
    mnt, sock = tmp_path / "mnt", tmp_path / "api.sock"
    mnt.mkdir()
    res = subprocess.run([script("nydus"), "mount", str(boot), str(mnt), "--config", str(cfg),
                          "--apisock", str(sock), "--background"], capture_output=True, text=True,
                         timeout=60)
    try:
        assert res.returncode == 0, res.stderr
        assert "fusermount3 -u" in res.stdout
        assert (mnt / "c/three.txt").read_bytes() == files["c/three.txt"]
        with open(mnt / "b/two.bin", "rb") as fh:
            assert fh.read(4096) == files["b/two.bin"][:4096]
        backend = ApiClient(str(sock)).call("GET", "/api/v1/metrics/backend")
        image_size = sum(p.stat().st_size for p in blobs.iterdir())
        # lazy: a 4 KiB read of the 3 MB file and a small file fetch far less than the image
        assert 0 < backend["read_amount_total"] < image_size / 2
        info = subprocess.run([script("nydusctl"), "--sock", str(sock), "info"], capture_output=True,
                              text=True, check=True).stdout
        assert "fetched" in info and "of blob data" in info
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
        deadline = time.monotonic() + 20
        while os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(sock), "the daemon exits once unmounted"
        assert not mounts_at(mnt)
    finally:
        force_unmount(mnt)
    # errors come back as one line from the foreground command
    res = subprocess.run([script("nydus"), "mount", str(boot), str(tmp_path / "missing"),
                          "--config", str(cfg), "--background"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "does not exist" in res.stderr and res.stderr.count("\n") == 1


def test_enable_xattr_off_hides_xattrs(need_fuse: None, tmp_path: Path) -> None:
    _, blobs = _image(tmp_path, {"f.txt": b"x"})
    src = tmp_path / "src" / "f.txt"
    os.setxattr(src, "user.k", b"v")
    boot2 = tmp_path / "x.boot"
    build(tmp_path / "src", "dir-rafs", bootstrap=boot2, blob_dir=blobs)
    cfg = _config(tmp_path, blobs, enable_xattr=False)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with NydusdProcess(mnt, ["-C", cfg, "-B", boot2]):
        with pytest.raises(OSError) as exc:
            os.getxattr(mnt / "f.txt", "user.k")
        assert exc.value.errno in (errno.EOPNOTSUPP, errno.ENODATA)
    cfg = _config(tmp_path, blobs, enable_xattr=True)
    with NydusdProcess(mnt, ["-C", cfg, "-B", boot2]):
        assert os.getxattr(mnt / "f.txt", "user.k") == b"v"


def _wait_for(pred, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_prefetch_files_and_prefetch_all(need_fuse: None, tmp_path: Path) -> None:
    files = {f"d{i}/f{i}.bin": random_bytes(200_000, i) for i in range(6)}
    boot, blobs = _image(tmp_path, files)
    listing = tmp_path / "prefetch.txt"
    listing.write_text("/d1/f1.bin\n/d4\n")
    cfg = _config(tmp_path, blobs, fs_prefetch={"enable": True, "prefetch_all": False, "threads_count": 2})
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with NydusdProcess(mnt, ["-C", cfg, "-B", boot, "--prefetch-files", listing],
                       apisock=tmp_path / "a.sock") as d:
        api = d.api
        # the listed files arrive without anyone reading them; the others do not
        def fetched() -> int:
            return api.call("GET", "/api/v1/metrics/blobcache")["prefetch_data_amount"]

        assert _wait_for(lambda: fetched() >= 400_000)
        cache = api.call("GET", "/api/v1/metrics/blobcache")
        assert cache["entries_count"] == 8  # 2 files x 4 chunks of 64 KiB
        assert api.call("GET", "/api/v1/metrics")["data_read"] == 0
        assert (mnt / "d4/f4.bin").read_bytes() == files["d4/f4.bin"]
    # prefetch_all: the whole image lands in the cache
    for p in (tmp_path / "cache").iterdir():
        p.unlink()
    cfg = _config(tmp_path, blobs, fs_prefetch={"enable": True, "prefetch_all": True})
    with NydusdProcess(mnt, ["-C", cfg, "-B", boot], apisock=tmp_path / "a.sock") as d:
        assert _wait_for(lambda: d.api.call("GET", "/api/v1/metrics/blobcache")["data_all_ready"])
        assert d.api.call("GET", "/api/v1/metrics")["data_read"] == 0
