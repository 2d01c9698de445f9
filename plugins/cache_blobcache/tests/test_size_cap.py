"""The size cap (``max_size``, beyond upstream) holds under a workload larger than the cap."""

from __future__ import annotations

import random
from pathlib import Path

from nydus_cache_blobcache import BlobCachePolicy
from nydus_testkit.fake_image import build_fake_image
from nydus_testkit.fakes import DirBackend, RecordingBackend

from nydus_core.storage import ReadPipeline

CHUNK = 0x10000
FILE = 256 << 10
#: st_blocks also counts the filesystem's own metadata of a fragmented file (ext4 extent blocks)
META_SLACK = 32 << 10


def _disk_usage(work_dir: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in work_dir.glob("*.blob.data"))


def _tree(files: int, seed: int) -> dict[str, bytes]:
    rnd = random.Random(seed)
    return {f"/d/f{i:03d}": rnd.randbytes(FILE) for i in range(files)}


def test_cap_holds_while_reading_more_than_it(tmp_path: Path) -> None:
    files = _tree(40, 1)  # 10 MiB of data, cap 2 MiB
    blobs, work = tmp_path / "blobs", tmp_path / "cache"
    blobs.mkdir()
    image, _ = build_fake_image(files, blob_dir=blobs, chunk_size=CHUNK)
    cap = 2 << 20
    policy = BlobCachePolicy({"work_dir": str(work), "max_size": cap})
    backend = RecordingBackend(DirBackend({"dir": str(blobs)}))
    peak = 0
    with ReadPipeline(image, backend, policy, amplify_io=0) as pipe:
        for _round in range(2):
            for path, data in files.items():
                assert pipe.read(image.resolve(path), 0, FILE) == data
                assert pipe.wait_idle(10)  # the cache writes that follow the read are done
                peak = max(peak, _disk_usage(work))
    assert peak <= cap + META_SLACK
    assert _disk_usage(work) <= cap + META_SLACK
    assert policy.used_bytes() <= cap
    assert policy.evictions > 0
    # the most recently read files are the ones still cached
    backend.reset()
    with ReadPipeline(image, backend, policy, amplify_io=0) as pipe:
        last = list(files)[-4:]
        for path in last:
            assert pipe.read(image.resolve(path), 0, FILE) == files[path]
    assert backend.requests == []
    policy.close()


def test_one_blob_larger_than_the_cap_is_trimmed_chunk_by_chunk(tmp_path: Path) -> None:
    files = _tree(12, 2)  # 3 MiB in one blob, cap 1 MiB
    blobs, work = tmp_path / "blobs", tmp_path / "cache"
    blobs.mkdir()
    image, _ = build_fake_image(files, blob_dir=blobs, chunk_size=CHUNK)
    policy = BlobCachePolicy({"work_dir": str(work), "max_size": "1M"})
    with ReadPipeline(image, DirBackend({"dir": str(blobs)}), policy, amplify_io=0) as pipe:
        for path, data in files.items():
            assert pipe.read(image.resolve(path), 0, FILE) == data
        assert pipe.wait_idle(10)
        ready = pipe.entries_count()  # the one blob's ready chunks
    assert 0 < ready <= (1 << 20) // CHUNK
    assert _disk_usage(work) <= (1 << 20) + META_SLACK
    data_file = next(work.glob("*.blob.data"))
    assert data_file.stat().st_size == image.blobs[0].uncompressed_size  # holes, not truncation
    policy.close()


def test_idle_blobs_go_first_and_whole(tmp_path: Path) -> None:
    files = _tree(16, 3)
    blobs, work = tmp_path / "blobs", tmp_path / "cache"
    blobs.mkdir()
    image, _ = build_fake_image(files, blob_dir=blobs, chunk_size=CHUNK,
                                blob_of=lambda p: 0 if p < "/d/f008" else 1)
    first = [p for p in files if p < "/d/f008"]
    second = [p for p in files if p >= "/d/f008"]
    # an uncapped reader fills the cache with both blobs
    policy = BlobCachePolicy({"work_dir": str(work)})
    with ReadPipeline(image, DirBackend({"dir": str(blobs)}), policy, amplify_io=0) as pipe:
        for path in first + second:
            pipe.read(image.resolve(path), 0, FILE)
    policy.close()
    assert _disk_usage(work) >= 4 << 20
    # a capped reader of an image made of blob 1 only (same bytes, same id) finds blob 0 idle on
    # disk and evicts it entirely, keeping blob 1 warm
    image2, _ = build_fake_image({p: files[p] for p in second}, chunk_size=CHUNK)
    assert image2.blobs[0].blob_id == image.blobs[1].blob_id
    policy = BlobCachePolicy({"work_dir": str(work), "max_size": "2200K"})
    backend = RecordingBackend(DirBackend({"dir": str(blobs)}))
    with ReadPipeline(image2, backend, policy, amplify_io=0) as pipe:
        for path in second:
            assert pipe.read(image2.resolve(path), 0, FILE) == files[path]
    policy.close()
    assert not (work / f"{image.blobs[0].blob_id}.blob.data").exists()
    assert (work / f"{image.blobs[1].blob_id}.blob.data").exists()
    assert backend.requests == []
