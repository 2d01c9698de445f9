"""The read pipeline on in-memory images with real blob files, a real directory backend and the
real blobcache: bytes, request merging, read-ahead bounds, in-flight dedup, integrity, errors,
priority, metrics."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from nydus_testkit.fake_image import Symlink, build_fake_image
from nydus_testkit.fakes import DirBackend, RecordingBackend

from nydus_core.errors import BackendError, BlobNotFoundError, IntegrityError
from nydus_core.interfaces import Backend
from nydus_core.plugins import get_compressor, registry
from nydus_core.storage import ON_DEMAND, PREFETCH, FetchPool, ReadPipeline
from nydus_core.storage.stats import latency_class, size_class

CHUNK = 0x10000


def _files(seed: int = 1, n: int = 24) -> dict[str, bytes]:
    rnd = random.Random(seed)
    out = {}
    for i in range(n):
        size = rnd.choice([0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, rnd.randint(0, 5 * CHUNK)])
        out[f"/d{i % 4}/f{i}"] = rnd.randbytes(size) if i % 3 else (b"abc%d" % i) * (size // 4)
    return out


@pytest.fixture
def blobs(tmp_path: Path) -> Path:
    d = tmp_path / "blobs"
    d.mkdir()
    return d


def _cache(tmp_path: Path, **cfg: object):
    return registry("cache").get("blobcache")({"work_dir": str(tmp_path / "cache"), **cfg})


def test_every_byte_at_every_offset(blobs: Path, tmp_path: Path) -> None:
    files = _files()
    image, _ = build_fake_image(files, blob_dir=blobs, chunk_size=CHUNK, compressor=get_compressor("zstd"),
                                blob_of=lambda p: int(p[2]) % 2)
    assert len(image.blobs) == 2
    rnd = random.Random(2)
    for cache in (None, _cache(tmp_path)):
        with ReadPipeline(image, DirBackend({"dir": str(blobs)}), cache, digest_validate=True) as pipe:
            for _ in range(2):  # cold, then warm
                for path, data in files.items():
                    ino = image.resolve(path)
                    assert pipe.read(ino, 0, len(data) + 1) == data
                    for _ in range(10):
                        off = rnd.randint(0, len(data) + 2)
                        n = rnd.randint(0, 3 * CHUNK)
                        assert pipe.read(ino, off, n) == data[off:off + n]
        if cache is not None:
            cache.close()


def test_adjacent_missing_chunks_make_one_request(blobs: Path) -> None:
    data = random.Random(3).randbytes(6 * CHUNK)
    image, _ = build_fake_image({"/big": data}, blob_dir=blobs, chunk_size=CHUNK)
    backend = RecordingBackend(DirBackend({"dir": str(blobs)}))
    with ReadPipeline(image, backend, None, amplify_io=0) as pipe:
        ino = image.resolve("/big")
        assert pipe.read(ino, CHUNK // 2, 3 * CHUNK) == data[CHUNK // 2:CHUNK // 2 + 3 * CHUNK]
    assert backend.ranges() == [(image.blobs[0].blob_id, 0, 4 * CHUNK)]


@pytest.mark.parametrize("amplify_io", [0, CHUNK, 3 * CHUNK + 100, 1 << 20])
def test_one_byte_fetches_at_most_max_chunk_amplify(blobs: Path, amplify_io: int) -> None:
    data = random.Random(4).randbytes(40 * CHUNK)
    image, _ = build_fake_image({"/big": data}, blob_dir=blobs, chunk_size=CHUNK)
    backend = RecordingBackend(DirBackend({"dir": str(blobs)}))
    with ReadPipeline(image, backend, None, amplify_io=amplify_io) as pipe:
        assert pipe.read(image.resolve("/big"), 5 * CHUNK + 7, 1) == data[5 * CHUNK + 7:5 * CHUNK + 8]
        fetched = pipe.metrics()["backend"]["read_amount_total"]
    assert fetched == backend.bytes_fetched()
    assert fetched <= max(CHUNK, amplify_io)
    # read-ahead is used when allowed: whole chunks up to the budget
    assert fetched == max(CHUNK, amplify_io // CHUNK * CHUNK)


def test_read_ahead_fills_the_next_reads(blobs: Path, tmp_path: Path) -> None:
    data = random.Random(5).randbytes(16 * CHUNK)
    image, _ = build_fake_image({"/big": data}, blob_dir=blobs, chunk_size=CHUNK)
    backend = RecordingBackend(DirBackend({"dir": str(blobs)}))
    cache = _cache(tmp_path)
    with ReadPipeline(image, backend, cache, amplify_io=4 * CHUNK) as pipe:
        ino = image.resolve("/big")
        for off in range(0, len(data), CHUNK // 2):
            assert pipe.read(ino, off, CHUNK // 2) == data[off:off + CHUNK // 2]
    cache.close()
    assert len(backend.requests) == 4 and backend.bytes_fetched() == len(data)


def test_sixteen_threads_one_fetch_per_chunk(blobs: Path, tmp_path: Path) -> None:
    data = random.Random(6).randbytes(8 * CHUNK + 123)
    image, _ = build_fake_image({"/f": data}, blob_dir=blobs, chunk_size=CHUNK,
                                compressor=get_compressor("zstd"))
    backend = RecordingBackend(DirBackend({"dir": str(blobs)}), delay=0.005)
    cache = _cache(tmp_path)
    ino = image.resolve("/f")
    results: dict[int, bytes] = {}
    barrier = threading.Barrier(16)
    with ReadPipeline(image, backend, cache, amplify_io=0, workers=8) as pipe:

        def reader(k: int) -> None:
            barrier.wait()
            out = bytearray()
            step = [4096, CHUNK, 100_000, 7][k % 4]
            for off in range(0, len(data), step):
                out += pipe.read(ino, off, step)
            results[k] = bytes(out)

        threads = [threading.Thread(target=reader, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    cache.close()
    assert all(r == data for r in results.values()) and len(results) == 16
    fetched: dict[int, int] = {}
    for _blob, off, length in backend.ranges():
        for c in image.chunks(ino):
            if off <= c.compressed_offset < off + length:
                fetched[c.compressed_offset] = fetched.get(c.compressed_offset, 0) + 1
    assert sorted(fetched) == sorted(c.compressed_offset for c in image.chunks(ino))
    assert set(fetched.values()) == {1}


def test_flipped_byte_fails_only_that_chunk_and_is_never_cached(blobs: Path, tmp_path: Path) -> None:
    files = {"/a": random.Random(7).randbytes(3 * CHUNK), "/b": random.Random(8).randbytes(2 * CHUNK)}
    image, _ = build_fake_image(files, blob_dir=blobs, chunk_size=CHUNK)
    blob = image.blobs[0]
    victim = image.chunks(image.resolve("/a"))[1]
    path = blobs / blob.blob_id
    raw = bytearray(path.read_bytes())
    raw[victim.compressed_offset + 10] ^= 0x01
    path.write_bytes(bytes(raw))
    cache = _cache(tmp_path)
    backend = DirBackend({"dir": str(blobs)})
    with ReadPipeline(image, backend, cache, digest_validate=True, amplify_io=0) as pipe:
        a = image.resolve("/a")
        with pytest.raises(IntegrityError) as err:
            pipe.read(a, 0, 3 * CHUNK)
        assert blob.blob_id in str(err.value) and f"chunk {victim.index}" in str(err.value)
        assert pipe.read(a, 0, CHUNK) == files["/a"][:CHUNK]  # its neighbours are fine
        assert pipe.read(a, 2 * CHUNK, CHUNK) == files["/a"][2 * CHUNK:]
        assert pipe.read(image.resolve("/b"), 0, 1 << 20) == files["/b"]
        assert not pipe.is_ready(victim)
        with pytest.raises(IntegrityError):  # still refused, not served from anywhere
            pipe.read(a, CHUNK, 10)
    cache.close()


def test_corrupt_compressed_chunk_is_an_integrity_error_even_without_validation(blobs: Path) -> None:
    data = b"compress me " * 20000
    image, _ = build_fake_image({"/z": data}, blob_dir=blobs, chunk_size=CHUNK,
                                compressor=get_compressor("zstd"))
    c = image.chunks(image.resolve("/z"))[0]
    assert c.is_compressed
    path = blobs / image.blobs[0].blob_id
    raw = bytearray(path.read_bytes())
    raw[c.compressed_offset + 8: c.compressed_offset + 40] = bytes(32)
    path.write_bytes(bytes(raw))
    with (ReadPipeline(image, DirBackend({"dir": str(blobs)}), None, digest_validate=False) as pipe,
          pytest.raises(IntegrityError, match=image.blobs[0].blob_id)):
        pipe.read(image.resolve("/z"), 0, 100)


class _Flaky(Backend):
    """Fails the first ``failures`` reads, then reads from a directory."""

    name = "flaky"

    def __init__(self, blob_dir: Path, failures: int) -> None:
        super().__init__({})
        self.inner = DirBackend({"dir": str(blob_dir)})
        self.failures = failures

    def size(self, blob_id: str) -> int:
        return self.inner.size(blob_id)

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("peer reset the connection")
        return self.inner.read(blob_id, offset, length)


def test_backend_failure_reaches_the_reader_then_a_retry_works(blobs: Path) -> None:
    data = random.Random(9).randbytes(CHUNK)
    image, _ = build_fake_image({"/f": data}, blob_dir=blobs, chunk_size=CHUNK)
    with ReadPipeline(image, _Flaky(blobs, 1), None) as pipe:
        with pytest.raises(BackendError, match="peer reset"):
            pipe.read(image.resolve("/f"), 0, 10)
        assert pipe.read(image.resolve("/f"), 0, 10) == data[:10]
        assert pipe.metrics()["backend"]["read_errors"] == 1
    (blobs / image.blobs[0].blob_id).unlink()
    with (ReadPipeline(image, DirBackend({"dir": str(blobs)}), None) as pipe,
          pytest.raises(BlobNotFoundError)):
        pipe.read(image.resolve("/f"), 0, 10)


def test_holes_and_directories(blobs: Path) -> None:
    image, _ = build_fake_image({"/f": b"x" * 10, "/d": None, "/l": Symlink("f")}, blob_dir=blobs)
    with ReadPipeline(image, DirBackend({"dir": str(blobs)}), None) as pipe:
        assert pipe.read(image.resolve("/f"), 10, 5) == b""
        assert pipe.read(image.resolve("/f"), 3, 0) == b""
        with pytest.raises(IsADirectoryError):
            pipe.read(image.resolve("/d"), 0, 1)


def test_chunk_lists_are_decoded_once_per_file(blobs: Path) -> None:
    data = random.Random(10).randbytes(4 * CHUNK)
    image, _ = build_fake_image({"/f": data}, blob_dir=blobs, chunk_size=CHUNK)
    with ReadPipeline(image, DirBackend({"dir": str(blobs)}), None) as pipe:
        ino = image.resolve("/f")
        before = image.chunks_calls
        for off in range(0, len(data), 4096):
            pipe.read(ino, off, 4096)
        assert image.chunks_calls - before == 1


def test_pool_runs_on_demand_first_and_keeps_a_worker_free() -> None:
    pool = FetchPool(2)
    gate = threading.Event()
    order: list[str] = []
    started = threading.Event()

    def slow(tag: str) -> None:
        started.set()
        gate.wait(5)
        order.append(tag)

    bg = [pool.submit(lambda i=i: slow(f"p{i}"), PREFETCH) for i in range(3)]
    assert started.wait(5)
    # one worker is held by prefetch; the other must stay free for on-demand work
    t0 = time.monotonic()
    assert pool.submit(lambda: order.append("user"), ON_DEMAND).result(5) is None
    assert time.monotonic() - t0 < 1
    # a queued prefetch job a user needs jumps the queue
    assert pool.promote(bg[2])
    gate.set()
    for f in bg:
        f.result(5)
    assert order[0] == "user" and order.index("p2") < order.index("p1")
    pool.close()


def test_metrics_have_upstream_shapes(blobs: Path, tmp_path: Path) -> None:
    image, _ = build_fake_image(_files(11, 6), blob_dir=blobs, chunk_size=CHUNK)
    cache = _cache(tmp_path)
    with ReadPipeline(image, DirBackend({"dir": str(blobs)}), cache, id="m1") as pipe:
        for _path, ino in image.walk():
            if image.getattr(ino).is_reg:
                pipe.read(ino, 0, 1 << 20)
                assert pipe.wait_idle(5)  # cache writes follow the first read
                pipe.read(ino, 0, 1 << 20)
        m = pipe.metrics()
    cache.close()
    backend, bc = m["backend"], m["blobcache"]
    for key in ("id", "backend_type", "read_count", "read_errors", "read_amount_total",
                "read_cumulative_latency_millis_total", "read_latency_dist"):
        assert key in backend
    assert backend["backend_type"] == "testdir" and backend["id"] == "m1"
    assert len(backend["read_latency_dist"]) == 8 and all(len(r) == 8 for r in backend["read_latency_dist"])
    assert sum(map(sum, backend["read_latency_dist"])) == backend["read_count"]
    for key in ("underlying_files", "store_path", "partial_hits", "whole_hits", "total", "entries_count",
                "prefetch_data_amount", "prefetch_requests_count", "prefetch_workers",
                "prefetch_unmerged_chunks", "prefetch_cumulative_time_millis", "prefetch_begin_time_secs",
                "prefetch_begin_time_millis", "prefetch_end_time_secs", "prefetch_end_time_millis",
                "buffered_backend_size", "data_all_ready"):
        assert key in bc
    assert bc["whole_hits"] > 0 and bc["data_all_ready"] is True
    assert bc["entries_count"] == image.blobs[0].chunk_count
    assert m["reads"]["bytes_read"] == 2 * sum(len(d) for d in _files(11, 6).values())


def test_size_and_latency_classes_follow_upstream() -> None:
    assert [size_class(n) for n in (0, 1023, 1024, 4096, 65536, 131072, 524288, 1 << 20, 5 << 20)] == [
        0, 0, 1, 2, 4, 5, 6, 7, 7]
    micros = (0, 1000, 1001, 20_000, 50_000, 100_000, 500_000, 2_000_000, 10**7)
    assert [latency_class(us) for us in micros] == [0, 0, 1, 1, 2, 3, 4, 6, 7]
