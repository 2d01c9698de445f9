""":class:`PipelineCacheContract`: the basic :class:`~nydus_testkit.contracts.CacheContract` plus
what the read pipeline relies on. Cache plugins subclass it with their ``cache_policy`` fixture.

It drives the real :class:`~nydus_core.storage.ReadPipeline` over an in-memory image whose blobs are
real files (:mod:`nydus_testkit.fake_image`) and checks: every byte read through the cache is
right; a restarted reader is served without touching the backend; two readers of one blob in one
process share it; concurrent puts and reads of one chunk are safe; a ranged read, when the cache
offers ``read_range``, returns exactly the asked slice.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

from nydus_core.interfaces import CachePolicy
from nydus_core.plugins import get_compressor
from nydus_core.rafs.model import ChunkInfo
from nydus_core.storage import ReadPipeline

from .contracts import CacheContract
from .fake_image import FakeImage, build_fake_image
from .fakes import DirBackend, RecordingBackend
from .samples import make_sample_blob

__all__ = ["PipelineCacheContract", "sample_tree"]


def sample_tree(seed: int = 7, files: int = 12, max_size: int = 200_000) -> dict[str, bytes]:
    """Return ``{path: bytes}``: files of assorted sizes (some empty, some repeated, some compressible)."""
    rnd = random.Random(seed)
    out: dict[str, bytes] = {}
    for i in range(files):
        kind = i % 4
        size = rnd.randint(0, max_size)
        if kind == 0:
            data = rnd.randbytes(size)
        elif kind == 1:
            data = (b"nydus %d " % i) * (size // 8 + 1)
        elif kind == 2:
            data = b""
        else:
            data = out.get(f"/dir{(i - 3) % 3}/file{i - 3}", b"") + rnd.randbytes(rnd.randint(1, 5000))
        out[f"/dir{i % 3}/file{i}"] = data
    return out


class PipelineCacheContract(CacheContract):
    """CacheContract plus pipeline-level behaviour (see the module docstring)."""

    def _image(self, tmp_path: Path) -> tuple[FakeImage, dict[str, bytes], Path]:
        blob_dir = tmp_path / "blobs"
        blob_dir.mkdir(exist_ok=True)
        files = sample_tree()
        image, _ = build_fake_image(files, blob_dir=blob_dir, chunk_size=0x8000,
                                    compressor=get_compressor("none"))
        return image, files, blob_dir

    def test_pipeline_reads_through_and_restarts_warm(
        self, cache_policy: Callable[[Path], CachePolicy], work_dir: Path, tmp_path: Path
    ) -> None:
        image, files, blob_dir = self._image(tmp_path)
        backend = RecordingBackend(DirBackend({"dir": str(blob_dir)}))
        policy = cache_policy(work_dir)
        with ReadPipeline(image, backend, policy, digest_validate=True, amplify_io=0) as pipe:
            for path, data in files.items():
                assert pipe.read(image.resolve(path), 0, len(data) + 10) == data
        policy.close()
        fetched = backend.bytes_fetched()
        assert fetched > 0
        backend.reset()
        policy = cache_policy(work_dir)
        with ReadPipeline(image, backend, policy, digest_validate=True) as pipe:
            for path, data in files.items():
                ino = image.resolve(path)
                assert pipe.read(ino, 0, len(data)) == data
                if len(data) > 10:
                    assert pipe.read(ino, 3, 7) == data[3:10]
        policy.close()
        assert backend.requests == []

    def test_two_pipelines_share_a_blob(
        self, cache_policy: Callable[[Path], CachePolicy], work_dir: Path, tmp_path: Path
    ) -> None:
        image, files, blob_dir = self._image(tmp_path)
        backend = RecordingBackend(DirBackend({"dir": str(blob_dir)}))
        policy = cache_policy(work_dir)
        first = ReadPipeline(image, backend, policy)
        second = ReadPipeline(image, backend, policy)
        path = next(p for p, d in files.items() if len(d) > 100_000)
        ino = image.resolve(path)
        assert first.read(ino, 0, 1 << 20) == files[path]
        first.close()  # the blob stays usable for the other reader
        backend.reset()
        assert second.read(ino, 0, 1 << 20) == files[path]
        assert backend.requests == []
        second.close()
        policy.close()

    def test_concurrent_put_and_get_of_one_chunk(
        self, cache_policy: Callable[[Path], CachePolicy], work_dir: Path
    ) -> None:
        sample = make_sample_blob((65536, 4096), seed=3)
        policy = cache_policy(work_dir)
        cache = policy.open_blob(sample.blob)
        seen: list[bytes | None] = []
        lock = threading.Lock()

        def job(i: int) -> None:
            if i % 2:
                cache.put(sample.chunks[0], sample.chunk_data[0])
            got = cache.get(sample.chunks[0])
            with lock:
                seen.append(got)

        threads = [threading.Thread(target=job, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(s is None or s == sample.chunk_data[0] for s in seen)
        assert cache.get(sample.chunks[0]) == sample.chunk_data[0]
        cache.close()
        policy.close()

    def test_read_range_returns_the_slice(
        self, cache_policy: Callable[[Path], CachePolicy], work_dir: Path
    ) -> None:
        sample = make_sample_blob((65536, 100_000), seed=4)
        policy = cache_policy(work_dir)
        cache = policy.open_blob(sample.blob)
        read_range: Callable[[ChunkInfo, int, int], bytes | None] | None = getattr(cache, "read_range", None)
        chunk, data = sample.chunks[1], sample.chunk_data[1]
        cache.put(chunk, data)
        if read_range is None:  # the pipeline then slices get()
            def sliced_get(c: ChunkInfo, start: int, length: int) -> bytes | None:
                got = cache.get(c)
                return None if got is None else got[start:start + length]

            read_range = sliced_get
        assert read_range(chunk, 0, len(data)) == data
        assert read_range(chunk, 12345, 100) == data[12345:12445]
        assert read_range(sample.chunks[0], 0, 10) is None
        cache.close()
        policy.close()
