"""The ``erofs`` driver's blob devices against the kernel: many layers, complete cache files used
directly (and pinned), corrupt chunks under ``digest_validate``."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from nydus_testsupport.fuse import NydusdProcess, fuse_unavailable, script

from nydus_core.builder import BuildOptions, build
from nydus_core.builder.merge import merge
from nydus_core.config import load_config
from nydus_core.fs import open_fs
from nydus_core.rafs.image import open_image

LAYERS = 64


@pytest.fixture(autouse=True)
def need_erofs() -> None:
    """Skip when this host has no FUSE or no kernel EROFS (a kernel feature, not ours)."""
    reason = fuse_unavailable()
    if reason is None:
        from nydus_frontend_fuse.erofs_mount import erofs_unavailable

        reason = erofs_unavailable()
    if reason:
        pytest.skip(reason)


def _config(path: Path, blobs: Path, cache: Path, *, max_size: int = 0, validate: bool = True) -> Path:
    cache_cfg: dict[str, object] = {"work_dir": str(cache)}
    if max_size:
        cache_cfg["max_size"] = max_size
    path.write_text(json.dumps({
        "device": {"backend": {"type": "localfs", "config": {"dir": str(blobs)}},
                   "cache": {"type": "blobcache", "config": cache_cfg}},
        "mode": "direct", "digest_validate": validate, "amplify_io": 0}))
    return path


def _layers(work: Path, n: int, size: int, **opts: Any) -> tuple[Path, Path, list[bytes]]:
    """``n`` layers, each one file ``layer-K/data`` of ``size`` bytes, merged; return the merged
    bootstrap, the blob dir and each layer's bytes."""
    blobs = work / "blobs"
    boots, contents = [], []
    for k in range(n):
        src = work / f"src{k}" / f"layer-{k:02d}"
        src.mkdir(parents=True)
        data = b"".join(hashlib.sha256(b"%d-%d" % (k, i)).digest() for i in range(size // 32))
        data += b"%02d\n" % k  # no two chunks alike (no dedup)
        (src / "data").write_bytes(data)
        contents.append(data)
        boot = work / f"layer{k}.boot"
        build(src.parent, "dir-rafs", bootstrap=boot, blob_dir=blobs,
              options=BuildOptions(chunk_size=0x1000, **opts))
        boots.append(boot)
    merged = work / "merged.boot"
    merge(boots, bootstrap=merged)
    return merged, blobs, contents


def test_an_image_of_64_layers_mounts_and_reads(tmp_path: Path) -> None:
    boot, blobs, contents = _layers(tmp_path, LAYERS, 5000)
    with open_image(boot) as image:
        assert len(image.blobs) == LAYERS
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with NydusdProcess(mnt, ["-C", _config(tmp_path / "c.json", blobs, tmp_path / "cache"), "-B", boot,
                             "--fs-driver", "erofs"]) as d:
        # 64 device paths of ~100 bytes each would not fit mount(2)'s one-page option string
        assert d.proc is not None
        assert sum(len(f"device=/run/nydusd/blobdev-{d.proc.pid}-xxxxxxxx/{'0' * 64},")
                   for _ in range(LAYERS)) > 4096
        for k, data in enumerate(contents):
            assert (mnt / f"layer-{k:02d}" / "data").read_bytes() == data


def test_a_complete_cache_file_is_the_device_and_stays_pinned(tmp_path: Path) -> None:
    boot, blobs, contents = _layers(tmp_path, 2, 64 << 10, compressor="none")
    cache = tmp_path / "cache"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with open_image(boot) as image:
        first_id = image.blobs[0].blob_id
    data_file = cache / f"{first_id}.blob.data"
    # fill blob 0's cache completely through a first mount
    with NydusdProcess(mnt, ["-C", _config(tmp_path / "c.json", blobs, cache), "-B", boot,
                             "--fs-driver", "erofs"]):
        assert (mnt / "layer-00" / "data").read_bytes() == contents[0]
    pinned = hashlib.sha256(data_file.read_bytes()).hexdigest()
    # a size cap below the two blobs: reading blob 1 wants to evict blob 0's chunks
    cfg = _config(tmp_path / "capped.json", blobs, cache, max_size=80 << 10)
    with NydusdProcess(mnt, ["-C", cfg, "-B", boot, "--fs-driver", "erofs"],
                       apisock=tmp_path / "api.sock") as d:
        stats = {b["blob_id"]: b for b in d.api.call("GET", "/api/v1/metrics/blobs")}
        assert stats[first_id]["direct"] is True
        assert not any(s["direct"] for k, s in stats.items() if k != first_id)
        assert (mnt / "layer-01" / "data").read_bytes() == contents[1]
        gc = subprocess.run([script("nydus"), "cache", "gc", "-w", str(cache), "--all"],
                            capture_output=True, text=True, timeout=60)
        assert gc.returncode == 0, gc.stderr
        assert data_file.exists()
        assert hashlib.sha256(data_file.read_bytes()).hexdigest() == pinned  # nothing punched
        subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=False)
        assert (mnt / "layer-00" / "data").read_bytes() == contents[0]


def test_a_corrupt_chunk_gives_eio_and_is_not_cached(tmp_path: Path) -> None:
    boot, blobs, contents = _layers(tmp_path, 1, 3 * 4096, compressor="none")
    with open_image(boot) as image:
        ino = image.resolve("/layer-00/data")
        chunk = image.chunks(ino)[1]
        blob_file = blobs / image.blobs[chunk.blob_index].blob_id
    raw = bytearray(blob_file.read_bytes())
    raw[chunk.compressed_offset + 10] ^= 0xFF
    blob_file.write_bytes(bytes(raw))
    cfg = _config(tmp_path / "c.json", blobs, tmp_path / "cache")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    d = NydusdProcess(mnt, ["-C", cfg, "-B", boot, "--fs-driver", "erofs", "--log-level", "debug"]).start()
    try:
        path = mnt / "layer-00" / "data"
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no read-ahead into the bad chunk
            assert os.pread(fd, 4096, 0) == contents[0][:4096]  # the good chunk before it
            for _ in range(2):  # never cached, so it fails again
                with pytest.raises(OSError) as exc:
                    os.pread(fd, 4096, 4096)
                assert exc.value.errno == errno.EIO
        finally:
            os.close(fd)
    finally:
        rc = d.stop()
        log = d.output()
        d.close()
    # Chunk 0 is recorded once its bytes are durable (the blobcache's group commit, an fdatasync
    # that a busy disk can hold up for tens of seconds); a clean stop waits for that, a kill loses
    # the record (the chunk is fetched again), so the check below holds only after a clean stop.
    assert rc == 0 and not d.killed, f"nydusd did not stop cleanly (exit {rc}):\n{log}"
    fs = open_fs(str(boot), load_config(str(cfg)))
    try:
        assert fs.pipeline is not None
        assert not fs.pipeline.is_ready(chunk)
        journals = {p.name: p.read_bytes().hex() for p in (tmp_path / "cache").iterdir()
                    if not p.name.endswith(".data")}
        assert fs.pipeline.is_ready(open_image(boot).chunks(ino)[0]), (log, journals)
    finally:
        fs.close()


def test_no_direct_blob_files_serves_a_complete_blob_through_fuse(tmp_path: Path) -> None:
    boot, blobs, contents = _layers(tmp_path, 1, 16 << 10)
    cfg = _config(tmp_path / "c.json", blobs, tmp_path / "cache")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with NydusdProcess(mnt, ["-C", cfg, "-B", boot, "--fs-driver", "erofs"]):
        assert (mnt / "layer-00" / "data").read_bytes() == contents[0]  # fills the cache
    flags = ["--fs-driver", "erofs", "--no-direct-blob-files", "--blobdev-keep-cache"]
    with NydusdProcess(mnt, ["-C", cfg, "-B", boot, *flags], apisock=tmp_path / "api.sock") as d:
        (dev,) = d.api.call("GET", "/api/v1/metrics/blobs")
        assert dev["direct"] is False
        assert (mnt / "layer-00" / "data").read_bytes() == contents[0]
        (dev,) = d.api.call("GET", "/api/v1/metrics/blobs")
        assert dev["reads"] > 0 and dev["cached_reads"] == dev["reads"]


def test_a_silent_registry_makes_readers_wait_while_the_kernel_answers_metadata(tmp_path: Path) -> None:
    """Reads wait up to the backend timeout and then get EIO; stat/readdir are answered at once."""
    import threading
    import time

    from nydus_testkit.servers import BlackholeServer

    timeout = 2
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (src / name).write_bytes(hashlib.sha256(name.encode()).digest() * 2000)
    (src / "dir" / "inner").write_text("x")
    boot, blobs = tmp_path / "img.boot", tmp_path / "blobs"
    build(src, "dir-rafs", bootstrap=boot, blob_dir=blobs, options=BuildOptions(compressor="lz4_block"))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with BlackholeServer() as hole:
        cfg = tmp_path / "cfg.json"
        cfg.write_text(json.dumps({"device": {
            "backend": {"type": "registry", "config": {
                "scheme": "http", "host": hole.address, "repo": "test/hung",
                "timeout": timeout, "connect_timeout": timeout, "retry_limit": 0}},
            "cache": {"type": "blobcache", "config": {"work_dir": str(tmp_path / "cache")}}}}))
        with NydusdProcess(mnt, ["-C", cfg, "-B", boot, "--fs-driver", "erofs"]):
            outcomes: dict[str, tuple[float, str]] = {}

            def read(name: str) -> None:
                t = time.monotonic()
                try:
                    (mnt / name).read_bytes()
                    what = "data"
                except OSError as exc:
                    what = os.strerror(exc.errno or 0)
                outcomes[name] = (time.monotonic() - t, what)

            readers = [threading.Thread(target=read, args=(n,)) for n in ("a", "b")]
            for r in readers:
                r.start()
            time.sleep(0.3)  # both reads now wait on the silent server
            t = time.monotonic()
            st = os.stat(mnt / "c")
            names = sorted(os.listdir(mnt / "dir"))
            served_in = time.monotonic() - t
            waiting = [r.is_alive() for r in readers]
            for r in readers:
                r.join(60)
            assert st.st_size == 64_000 and names == ["inner"]
            assert all(waiting), outcomes
            assert served_in < 0.5, f"metadata took {served_in:.2f}s while two reads waited"
            for name in ("a", "b"):
                took, what = outcomes[name]
                assert timeout - 1 <= took < 30 and what == os.strerror(errno.EIO), outcomes
