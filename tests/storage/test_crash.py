"""Crash test: a reader with prefetch running is killed with SIGKILL at random moments; after every
kill each chunk the blobcache marks ready holds exactly its bytes, and in the end reading completes
with every byte right (issue 4 acceptance)."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nydus_cache_blobcache.journal import parse_journal
from nydus_testkit.cli import clean_env
from nydus_testsupport.storage_helpers import all_chunks, build_image, localfs_config, verify_blob_cache

from nydus_core.fs import open_fs
from nydus_core.plugins import digester_by_id
from nydus_core.rafs.image import open_image

CHUNK = 0x10000
KILLS = 20


def _tree() -> dict[str, bytes | str | None]:
    rnd = random.Random(51)
    files: dict[str, bytes | str | None] = {}
    for i in range(96):
        size = rnd.choice([3 * CHUNK // 2, 4 * CHUNK, 7 * CHUNK + 100, 9000])
        half = rnd.randbytes(size // 2)
        files[f"/d{i % 4}/f{i:02d}"] = half + bytes(size - len(half))  # half compressible
    return files


def _check_cache(image, cache_dir: Path) -> int:
    """Verify every chunk the journal marks ready; return how many there are."""
    by_offset = {c.uncompressed_offset: c for c in all_chunks(image)}
    total = 0
    for blob in image.blobs:
        map_path = cache_dir / f"{blob.blob_id}.chunk_map"
        if not map_path.exists():
            continue
        journal = parse_journal(map_path.read_bytes())
        ready = []
        for off, (size, tag) in journal.ready.items():
            c = by_offset[off]
            assert c.uncompressed_size == size and c.block_id.startswith(tag)
            ready.append(c)
        bad = verify_blob_cache(cache_dir / f"{blob.blob_id}.blob.data", ready, digester_by_id(blob.digester))
        assert bad == [], f"{len(bad)} chunks marked ready hold wrong bytes"
        total += len(ready)
    return total


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_bad_ready_chunks(tmp_path: Path) -> None:
    files = _tree()
    boot, blobs, _ = build_image(tmp_path, files, chunk_size=CHUNK, compressor="zstd")
    image = open_image(boot)
    nchunks = len({c.uncompressed_offset for c in all_chunks(image)})
    cache_dir = tmp_path / "cache"
    cfg = localfs_config(blobs, cache_dir, digest_validate=True, amplify_io=0,
                         fs_prefetch={"enable": True, "threads_count": 4, "merging_size": 4 * CHUNK,
                                      "bandwidth_rate": 512 << 10})
    cfg_path = tmp_path / "nydusd.json"
    cfg_path.write_text(json.dumps(cfg))
    rnd = random.Random(52)
    mid_run_kills = 0
    progress = []
    deadline = time.monotonic() + 150  # ~20 s on a quiet machine; generous for a loaded one
    # the readers are forked by one server process (no Python start-up per reader)
    server = subprocess.Popen(
        [sys.executable, "-m", "nydus_testsupport.crash_reader", "--serve"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, env=clean_env(), text=True,  # its stderr (tracebacks): the test's
    )
    assert server.stdin is not None and server.stdout is not None

    def answer() -> str:
        line = server.stdout.readline() if server.stdout else ""
        assert line, "the reader server died (its stderr is in the captured output)"
        return line.strip()

    try:
        for attempt in range(3 * KILLS):
            if mid_run_kills >= KILLS or time.monotonic() > deadline:
                break
            server.stdin.write(f"RUN {boot} {cfg_path} {attempt}\n")
            server.stdin.flush()
            assert answer() == "READY"
            time.sleep(rnd.uniform(0.02, 0.6))
            server.stdin.write("KILL\n")  # SIGKILL, unless the reader already finished
            server.stdin.flush()
            while not (line := answer()).startswith("EXIT "):
                assert line == "DONE", line
            if line == "EXIT killed":
                mid_run_kills += 1
            else:
                assert line == "EXIT finished 0", line
            progress.append(_check_cache(image, cache_dir))
    finally:
        server.stdin.close()
        server.wait(30)
        server.stdout.close()
    assert mid_run_kills >= KILLS, f"only {mid_run_kills} kills landed while the reader was running"
    assert 0 < progress[-1] < nchunks or progress[-1] == nchunks
    assert any(b > a for a, b in itertools.pairwise(progress))  # restarts reuse and extend the cache

    # after all that, a reader completes and every byte is right
    with open_fs(boot, localfs_config(blobs, cache_dir, digest_validate=True)) as fs:
        for path, data in files.items():
            assert fs.read_bytes(path) == data
    assert _check_cache(image, cache_dir) == nchunks
