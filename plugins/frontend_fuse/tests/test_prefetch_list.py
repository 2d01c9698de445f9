"""The access pattern of a nydusd mount becomes the next build's prefetch list (`nydusctl
prefetch-list`), and the image rebuilt with it prefetches exactly the files that were read."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
from pathlib import Path

import pytest
from nydus_testkit.cli import clean_env
from nydus_testsupport.fuse import NydusdProcess, fuse_unavailable, script
from nydus_testsupport.storage_helpers import build_image, localfs_config

from nydus_core.fs import open_fs
from nydus_core.rafs.image import open_image

CHUNK = 0x10000


def _files() -> dict[str, bytes | str | None]:
    rnd = random.Random(16)
    files: dict[str, bytes | str | None] = {f"/app/d{i % 4}/f{i:02d}": rnd.randbytes(CHUNK + 100 * i)
                                           for i in range(16)}
    files["/app/with space.txt"] = b"a name with a space\n"
    files["/app/link"] = "->d1/f05"
    return files


def _cached(fs) -> set[str]:
    """Regular files whose every chunk is in the cache."""
    out = set()
    for dirpath, _dirs, names in fs.walk("/"):
        for n in names:
            p = f"{dirpath.rstrip('/')}/{n}"
            if stat.S_ISREG(fs.lstat(p).st_mode) and all(
                    fs.pipeline.is_ready(c) for c in fs.pipeline.file(fs.resolve(p)).chunks):
                out.add(p)
    return out


def test_access_pattern_becomes_a_prefetch_list(tmp_path: Path) -> None:
    reason = fuse_unavailable()
    if reason:
        pytest.skip(reason)
    files = _files()
    boot, blobs, _ = build_image(tmp_path, files, chunk_size=CHUNK)
    cfg = tmp_path / "nydusd.json"
    cfg.write_text(json.dumps(localfs_config(blobs, tmp_path / "cache", access_pattern=True)))
    mnt, sock, listing = tmp_path / "mnt", tmp_path / "api.sock", tmp_path / "app.prefetch"
    mnt.mkdir()
    # the workload: reads three files (one twice, one through a symlink), stats and lists others
    read_order = ["/app/d2/f10", "/app/with space.txt", "/app/d1/f05"]
    with NydusdProcess(mnt, ["-C", cfg, "-B", boot], apisock=sock):
        assert (mnt / "app/d2/f10").read_bytes() == files["/app/d2/f10"]
        os.listdir(mnt / "app/d3")
        os.stat(mnt / "app/d0/f00")
        assert (mnt / "app/with space.txt").read_bytes() == files["/app/with space.txt"]
        assert (mnt / "app/link").read_bytes() == files["/app/d1/f05"]
        assert (mnt / "app/d2/f10").read_bytes() == files["/app/d2/f10"]
        ctl = subprocess.run([script("nydusctl"), "--sock", str(sock), "prefetch-list", "-o", str(listing)],
                             capture_output=True, text=True, timeout=60, env=clean_env())
        assert ctl.returncode == 0, ctl.stderr
        assert ctl.stderr.strip() == f"{listing}: 3 paths"
        stdout = subprocess.run([script("nydusctl"), "-S", str(sock), "prefetch-list"],
                                capture_output=True, text=True, timeout=60, env=clean_env())
        assert stdout.returncode == 0, stdout.stderr
    assert listing.read_text() == stdout.stdout == "".join(p + "\n" for p in read_order)

    # the next build reads it on stdin
    src = Path(boot).with_suffix(".src")
    new_boot, new_blobs = tmp_path / "new.boot", tmp_path / "new.blobs"
    with open(listing, "rb") as stdin:
        proc = subprocess.run([script("nydus-image"), "create", "--prefetch-policy", "fs",
                               "--chunk-size", hex(CHUNK), "-B", str(new_boot), "-D", str(new_blobs),
                               str(src)], stdin=stdin, capture_output=True, timeout=120, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    new = open_image(new_boot)
    assert new.prefetch_inodes() == [new.resolve(p) for p in read_order]

    # and prefetches exactly those files: the table prefetcher, nobody reading
    fs_prefetch = {"enable": True, "threads_count": 2, "prefetch_all": False}
    cfg2 = localfs_config(new_blobs, tmp_path / "cache2", fs_prefetch=fs_prefetch)
    with open_fs(str(new_boot), cfg2) as fs:
        assert fs.prefetcher is not None and fs.prefetcher.name == "table"
        assert fs.prefetcher.wait(30)
        assert fs.metrics()["reads"]["reads"] == 0
        assert _cached(fs) == set(read_order)


def test_prefetch_list_without_access_pattern_says_which_key(tmp_path: Path) -> None:
    reason = fuse_unavailable()
    if reason:
        pytest.skip(reason)
    boot, blobs, _ = build_image(tmp_path, {"/a": b"x" * 10}, chunk_size=CHUNK)
    cfg = tmp_path / "nydusd.json"
    cfg.write_text(json.dumps(localfs_config(blobs, None)))
    mnt, sock = tmp_path / "mnt", tmp_path / "api.sock"
    mnt.mkdir()
    with NydusdProcess(mnt, ["-C", cfg, "-B", boot], apisock=sock):
        ctl = subprocess.run([script("nydusctl"), "-S", str(sock), "prefetch-list", "-o",
                              str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                             env=clean_env())
    assert ctl.returncode == 1
    assert ctl.stderr.strip().splitlines() == [
        "error: GET /api/v1/metrics/pattern: 400 Bad Request: access_pattern is not enabled in this "
        "instance's config"]
    assert not (tmp_path / "out").exists()
