"""A corrupted blob byte under digest_validate: EIO for that file, the daemon lives, others read."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from nydus_testkit.samples import random_bytes
from nydus_testsupport.fuse import NydusdProcess

from nydus_core.builder import BuildOptions, build
from nydus_core.rafs.image import open_image


def test_corrupt_chunk_gives_eio_and_the_daemon_keeps_serving(need_fuse: None, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    files = {"victim.bin": random_bytes(300_000, 1), "d/healthy.bin": random_bytes(200_000, 2),
             "small.txt": b"still fine\n"}
    for name, data in files.items():
        (src / name).write_bytes(data)
    boot, blobs = tmp_path / "image.boot", tmp_path / "blobs"
    # uncompressed chunks: only the digest check can notice a flipped byte
    res = build(src, "dir-rafs", bootstrap=boot, blob_dir=blobs,
                options=BuildOptions(chunk_size=0x10000, compressor="none", digester="sha256"))
    assert res.blob_path is not None
    with open_image(boot) as img:
        chunk = img.chunks(img.resolve("/victim.bin"))[2]
    with open(res.blob_path, "r+b") as fh:
        off = chunk.compressed_offset + 100
        fh.seek(off)
        byte = fh.read(1)
        fh.seek(off)
        fh.write(bytes([byte[0] ^ 0xFF]))
    cfg = tmp_path / "nydusd.json"
    cfg.write_text(json.dumps({
        "device": {"backend": {"type": "localfs", "config": {"dir": str(blobs)}},
                   "cache": {"type": "blobcache", "config": {"work_dir": str(tmp_path / "cache")}}},
        "digest_validate": True}))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with NydusdProcess(mnt, ["-C", cfg, "-B", boot], apisock=tmp_path / "api.sock") as d:
        with open(mnt / "victim.bin", "rb") as fh:
            assert fh.read(0x10000) == files["victim.bin"][:0x10000]  # chunk 0 is intact
            fh.seek(2 * 0x10000)
            with pytest.raises(OSError) as exc:
                fh.read(0x10000)
            assert exc.value.errno == errno.EIO
        for _ in range(3):  # again: still EIO, never the corrupt bytes
            with pytest.raises(OSError) as exc:
                (mnt / "victim.bin").read_bytes()
            assert exc.value.errno == errno.EIO
        assert d.alive()
        assert (mnt / "d" / "healthy.bin").read_bytes() == files["d/healthy.bin"]
        assert (mnt / "small.txt").read_bytes() == files["small.txt"]
        events = d.api.call("GET", "/api/v1/daemon/events")
        assert events["total_errors"] >= 2
        assert "integrity" in events["by_kind"]
        metrics = d.api.call("GET", "/api/v1/metrics")
        assert metrics["fop_errors"][4] >= 2  # READ
        log = d.output()
        assert log.count("failed") == 1, log  # logged once per (inode, kind)
        assert "Traceback" not in log
    assert not os.listdir(mnt)
