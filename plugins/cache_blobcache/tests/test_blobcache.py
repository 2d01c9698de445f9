"""blobcache specifics: config keys, the on-disk layout (an EROFS extra device), the journal's crash
rules, validation on cache reads, sharing between openers, and ``gc``."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from nydus_cache_blobcache import BlobCachePolicy
from nydus_cache_blobcache.journal import HEADER_SIZE, RECORD_SIZE, parse_journal
from nydus_cache_blobcache.manage import list_entries, run_gc
from nydus_cache_blobcache.policy import parse_size
from nydus_testkit.fakes import RecordingBackend
from nydus_testkit.samples import make_sample_blob
from nydus_testsupport.fixtures import upstream_dir
from nydus_testsupport.storage_helpers import verify_blob_cache

from nydus_core.errors import ConfigError
from nydus_core.plugins import registry
from nydus_core.rafs.image import open_image
from nydus_core.storage import ReadPipeline

V6_MD5 = {"lib.rs": "4709cf8873e419ecedc7d43fdee4a75f", "sync_io.rs": "5442bc7dc9dc5f985c7594e23866ae6f"}


def _v6_fixture() -> tuple[Path, Path]:
    up = upstream_dir()
    if up is None:
        pytest.skip("upstream fixtures not found (expected ../shared/fixtures/upstream)")
    return up / "rafs-v6" / "rafs-v6-2.2.boot", up / "rafs-v6" / "blobs"


def _localfs(blob_dir: Path) -> RecordingBackend:
    return RecordingBackend(registry("backend").get("localfs")({"dir": str(blob_dir)}))


# -- config ---------------------------------------------------------------------------------------


def test_config_defaults_and_sizes() -> None:
    cfg = BlobCachePolicy.validate_config({})
    assert cfg["work_dir"] == "." and cfg["max_size"] == 0
    assert parse_size("512M") == 512 << 20
    assert parse_size("10GiB") == 10 << 30
    assert parse_size(" 7 k ") == 7 << 10
    assert parse_size(4096) == 4096


@pytest.mark.parametrize(("config", "key"), [
    ({"work_dir": 5}, "work_dir"),
    ({"max_size": "lots"}, "max_size"),
    ({"max_size": -1}, "max_size"),
    ({"max_size": True}, "max_size"),
    ({"enable_encryption": True}, "enable_encryption"),
    ({"disable_indexed_map": "yes"}, "disable_indexed_map"),
])
def test_config_errors_name_the_key(config: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        BlobCachePolicy.validate_config(config)
    assert err.value.key == key


def test_unwritable_work_dir_is_a_cache_error(tmp_path: Path) -> None:
    from nydus_core.errors import CacheError

    target = tmp_path / "file"
    target.write_text("not a dir")
    with pytest.raises(CacheError, match="file"):
        BlobCachePolicy({"work_dir": str(target / "sub")})


# -- layout ---------------------------------------------------------------------------------------


def test_data_file_is_the_erofs_extra_device(tmp_path: Path) -> None:
    """After reading every file of upstream's v6 fixture through the cache, ``<id>.blob.data`` is the
    blob's uncompressed image: fsck.erofs extracts the files from bootstrap + cache file alone."""
    boot, blobs = _v6_fixture()
    if shutil.which("fsck.erofs") is None:
        pytest.fail("fsck.erofs (erofs-utils) is required")
    image = open_image(boot)
    policy = BlobCachePolicy({"work_dir": str(tmp_path / "cache")})
    with ReadPipeline(image, _localfs(blobs), policy, digest_validate=True) as pipe:
        for path, ino in image.walk():
            if image.getattr(ino).is_reg:
                data = pipe.read(ino, 0, 1 << 20)
                assert hashlib.md5(data).hexdigest() == V6_MD5[os.fsdecode(path).lstrip("/")]
    policy.close()
    blob = image.blobs[0]
    data_file = tmp_path / "cache" / f"{blob.blob_id}.blob.data"
    assert data_file.stat().st_size == blob.uncompressed_size
    out = tmp_path / "extract"
    proc = subprocess.run(["fsck.erofs", f"--device={data_file}", f"--extract={out}", str(boot)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name, md5 in V6_MD5.items():
        assert hashlib.md5((out / name).read_bytes()).hexdigest() == md5


# -- journal --------------------------------------------------------------------------------------


def _filled(work_dir: Path, which: tuple[int, ...] = (0, 1, 2, 3)):
    sample = make_sample_blob((65536, 4096, 1, 100_000, 65536), seed=9)
    policy = BlobCachePolicy({"work_dir": str(work_dir)})
    cache = policy.open_blob(sample.blob)
    for i in which:
        cache.put(sample.chunks[i], sample.chunk_data[i])
    cache.close()
    policy.close()
    return sample, work_dir / f"{sample.blob_id}.chunk_map", work_dir / f"{sample.blob_id}.blob.data"


def test_journal_records_each_ready_chunk(tmp_path: Path) -> None:
    sample, map_path, _ = _filled(tmp_path)
    raw = map_path.read_bytes()
    assert len(raw) == HEADER_SIZE + 4 * RECORD_SIZE
    st = parse_journal(raw)
    assert st.valid and set(st.ready) == {sample.chunks[i].uncompressed_offset for i in range(4)}


def test_close_waits_for_the_sync_in_progress_and_records_the_chunk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A chunk put while the sync thread's ``fdatasync`` is still running (a busy disk) is recorded
    by close, which waits for it and says so: a clean stop loses nothing that was served."""
    sample = make_sample_blob((4096, 4096), seed=3)
    policy = BlobCachePolicy({"work_dir": str(tmp_path)})
    cache = policy.open_blob(sample.blob)
    real_fdatasync, syncing, disk_done = os.fdatasync, threading.Event(), threading.Event()

    def busy_disk(fd: int) -> None:  # the real sync, once the "disk" has caught up
        syncing.set()
        disk_done.wait(30)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", busy_disk)
    caplog.set_level(logging.INFO, logger="nydus_cache_blobcache.blobfile")
    cache.put(sample.chunks[0], sample.chunk_data[0])
    assert syncing.wait(10)  # the sync thread is in fdatasync: nothing recorded yet
    closer = threading.Thread(target=lambda: (cache.close(), policy.close()))
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # close waits for the sync
    disk_done.set()
    closer.join(30)
    assert not closer.is_alive()
    assert "making 1 written chunk(s) durable before closing" in caplog.text
    monkeypatch.undo()
    again = BlobCachePolicy({"work_dir": str(tmp_path)})
    reopened = again.open_blob(sample.blob)
    try:
        assert reopened.is_ready(sample.chunks[0]) and not reopened.is_ready(sample.chunks[1])
    finally:
        reopened.close()
        again.close()


def test_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    sample, map_path, _ = _filled(tmp_path)
    with open(map_path, "ab") as f:
        f.write(b"\x13" * 19)  # a torn, half-written record
    policy = BlobCachePolicy({"work_dir": str(tmp_path)})
    cache = policy.open_blob(sample.blob)
    assert [cache.get(c) for c in sample.chunks[:4]] == sample.chunk_data[:4]
    assert map_path.stat().st_size == HEADER_SIZE + 4 * RECORD_SIZE  # repaired on exclusive open
    cache.put(sample.chunks[4], sample.chunk_data[4])
    cache.close()
    policy.close()
    assert len(parse_journal(map_path.read_bytes()).ready) == 5


def test_corrupt_record_invalidates_it_and_later_ones(tmp_path: Path) -> None:
    sample, map_path, _ = _filled(tmp_path)
    raw = bytearray(map_path.read_bytes())
    raw[HEADER_SIZE + 2 * RECORD_SIZE + 3] ^= 0xFF  # third record
    map_path.write_bytes(bytes(raw))
    policy = BlobCachePolicy({"work_dir": str(tmp_path)})
    cache = policy.open_blob(sample.blob)
    assert [cache.is_ready(c) for c in sample.chunks] == [True, True, False, False, False]
    cache.close()
    policy.close()


def test_record_vouches_only_for_its_own_chunk(tmp_path: Path) -> None:
    """A chunk record at the same offset but with another digest (another image's chunk) is a miss."""
    sample, _, _ = _filled(tmp_path, (0,))
    other = make_sample_blob((65536,), seed=10)
    impostor = sample.chunks[0].with_file_offset(0)
    impostor.block_id = other.chunks[0].block_id
    policy = BlobCachePolicy({"work_dir": str(tmp_path)})
    cache = policy.open_blob(sample.blob)
    assert cache.is_ready(sample.chunks[0]) and not cache.is_ready(impostor)
    assert cache.get(impostor) is None
    cache.close()
    policy.close()


def test_bad_header_starts_over(tmp_path: Path) -> None:
    sample, map_path, _ = _filled(tmp_path)
    map_path.write_bytes(b"garbage" * 20)
    policy = BlobCachePolicy({"work_dir": str(tmp_path)})
    cache = policy.open_blob(sample.blob)
    assert not any(cache.is_ready(c) for c in sample.chunks)
    cache.put(sample.chunks[0], sample.chunk_data[0])
    assert cache.get(sample.chunks[0]) == sample.chunk_data[0]
    cache.close()
    policy.close()


def test_validate_refetches_a_chunk_corrupted_in_the_cache(tmp_path: Path) -> None:
    """With cache ``validate``, bytes rotting in the cache file are detected, forgotten and fetched
    again; without it they would be served (that is what validate is for)."""
    boot, blobs = _v6_fixture()
    image = open_image(boot)
    work = tmp_path / "cache"
    policy = BlobCachePolicy({"work_dir": str(work)}, validate=True)
    backend = _localfs(blobs)
    ino = image.resolve("/lib.rs")
    with ReadPipeline(image, backend, policy) as pipe:
        good = pipe.read(ino, 0, 1 << 20)
    policy.close()
    data_file = work / f"{image.blobs[0].blob_id}.blob.data"
    chunk = image.chunks(ino)[0]
    with open(data_file, "r+b") as f:
        f.seek(chunk.uncompressed_offset + 100)
        f.write(b"\xff\xfe")
    backend.reset()
    policy = BlobCachePolicy({"work_dir": str(work)}, validate=True)
    with ReadPipeline(image, backend, policy) as pipe:
        assert pipe.read(ino, 0, 1 << 20) == good
    policy.close()
    assert len(backend.requests) == 1  # refetched once, then cached again
    from nydus_core.plugins import digester_by_id

    cache = BlobCachePolicy({"work_dir": str(work)}).open_blob(image.blobs[0])
    assert verify_blob_cache(data_file, [chunk], digester_by_id(image.blobs[0].digester)) == []
    cache.close()


# -- sharing and gc -------------------------------------------------------------------------------


def test_two_openers_share_and_gc_spares_blobs_in_use(tmp_path: Path) -> None:
    sample, _, data_path = _filled(tmp_path, (0,))
    other = make_sample_blob((4096, 8192), seed=11, blob_index=1)
    a = BlobCachePolicy({"work_dir": str(tmp_path)})
    b = BlobCachePolicy({"work_dir": str(tmp_path)})  # another "process" (its own descriptors)
    ca, cb = a.open_blob(sample.blob), b.open_blob(sample.blob)
    ca.put(sample.chunks[1], sample.chunk_data[1])
    assert cb.get(sample.chunks[0]) == sample.chunk_data[0]
    co = a.open_blob(other.blob)
    co.put(other.chunks[0], other.chunk_data[0])
    co.close()  # `other` is idle now, `sample` is in use
    entries = {e["blob_id"]: e for e in list_entries(str(tmp_path))}
    assert entries[sample.blob_id]["in_use"] and not entries[other.blob_id]["in_use"]
    assert entries[other.blob_id]["ready_chunks"] == 1
    removed = run_gc(str(tmp_path), remove_all=True)
    assert [e["blob_id"] for e in removed] == [other.blob_id]
    assert data_path.exists()
    assert not (tmp_path / f"{other.blob_id}.blob.data").exists()
    ca.close()
    cb.close()
    a.close()
    b.close()
    assert [e["blob_id"] for e in run_gc(str(tmp_path), max_size=0)] == [sample.blob_id]
    assert list_entries(str(tmp_path)) == []


def test_journal_records_chunk_indexes_and_older_journals_still_load(tmp_path: Path) -> None:
    from nydus_cache_blobcache.journal import RECORD, encode_record

    sample, map_path, _ = _filled(tmp_path)
    raw = map_path.read_bytes()
    slots = [RECORD.unpack_from(raw, HEADER_SIZE + i * RECORD_SIZE)[4] for i in range(4)]
    assert slots == [sample.chunks[i].index + 1 for i in range(4)]  # the index rides in the record
    # a journal written before the index was recorded (slot 0): the same chunks are ready
    legacy = raw[:HEADER_SIZE] + b"".join(
        encode_record(c.uncompressed_offset, c.uncompressed_size, c.block_id) for c in sample.chunks[:4])
    map_path.write_bytes(legacy)
    assert set(parse_journal(legacy).ready) == {c.uncompressed_offset for c in sample.chunks[:4]}
    policy = BlobCachePolicy({"work_dir": str(tmp_path)})
    cache = policy.open_blob(sample.blob)
    assert [cache.get(c) for c in sample.chunks[:4]] == sample.chunk_data[:4]
    assert cache.get(sample.chunks[4]) is None
    # a record whose digest prefix does not match the chunk never vouches for it
    other = sample.chunks[4]
    cache.close()
    policy.close()
    map_path.write_bytes(legacy + encode_record(other.uncompressed_offset, other.uncompressed_size,
                                                b"\xff" * 8, index=other.index))
    policy = BlobCachePolicy({"work_dir": str(tmp_path)})
    cache = policy.open_blob(sample.blob)
    assert cache.get(other) is None and cache.ready_count() == 5
    cache.close()
    policy.close()
