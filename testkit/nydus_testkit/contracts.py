"""Contract test suites that every implementation of an interface must pass.

A plugin's tests subclass a contract and provide its fixture(s) for the real implementation; the
inherited tests then run against it::

    from nydus_testkit import CompressorContract

    class TestZstd(CompressorContract):
        @pytest.fixture
        def compressor(self):
            return ZstdCompressor()

- :class:`CompressorContract`: fixture ``compressor`` (an instance).
- :class:`DigesterContract`: fixture ``digester`` (an instance); for a name upstream does not know,
  also ``reference`` (a function ``bytes -> bytes`` computing the digest independently).
- :class:`BackendContract`: fixtures ``backend`` (an instance) and ``put_blob`` (a function
  ``(blob_id, data) -> None`` that stores a blob where ``backend`` will find it, without going
  through ``backend``); class attribute ``writable`` says whether ``backend.write`` must work.
- :class:`CacheContract`: fixture ``cache_policy`` (a function ``work_dir -> CachePolicy``).
  Sample blobs come from :func:`~nydus_testkit.samples.make_sample_blob` (fixture ``sample``).

Expected values come from upstream's tables (rafs-format.md §2) and from independent
implementations (``hashlib``, ``blake3``, slicing the bytes that were stored), never from the code
under test.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest

from nydus_core.errors import BlobNotFoundError, IntegrityError, NydusError, UnsupportedOperationError
from nydus_core.interfaces import Backend, BlobCache, CachePolicy, Compressor, Digester

from .samples import SampleBlob, blob_id_of, make_sample_blob, payload, random_bytes

__all__ = [
    "UPSTREAM_COMPRESSORS",
    "UPSTREAM_DIGESTERS",
    "BackendContract",
    "CacheContract",
    "CompressorContract",
    "DigesterContract",
]

MiB = 1024 * 1024

#: Upstream's compressors: name -> (algorithm id §2.1, RafsSuperFlags bit §2.2, ToC flag §6.3 or None).
UPSTREAM_COMPRESSORS: dict[str, tuple[int, int, int | None]] = {
    "none": (0, 0x1, 0x1),
    "lz4_block": (1, 0x2, 0x4),
    "gzip": (2, 0x40, None),
    "zstd": (3, 0x80, 0x2),
}

#: Upstream's digesters: name -> (algorithm id §2.1, RafsSuperFlags bit §2.2).
UPSTREAM_DIGESTERS: dict[str, tuple[int, int]] = {
    "blake3": (0, 0x4),
    "sha256": (1, 0x8),
}

#: Published test vectors (FIPS 180-2 for sha256, the BLAKE3 reference for blake3).
PUBLISHED_VECTORS: dict[str, dict[bytes, str]] = {
    "sha256": {
        b"": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    },
    "blake3": {
        b"": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        b"abc": "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
    },
}



def assert_same_bytes(actual: bytes | bytearray | memoryview | None, expected: bytes) -> None:
    """Assert two byte strings are equal, reporting length and first difference (pytest's own diff of
    megabyte strings takes minutes when it runs untruncated, as it does under CI=true)."""
    if actual is None:
        raise AssertionError(f"got None, expected {len(expected)} bytes")
    a = bytes(actual)
    if a == expected:
        return
    first = next((i for i, (x, y) in enumerate(zip(a, expected)) if x != y), min(len(a), len(expected)))
    raise AssertionError(f"bytes differ: got {len(a)} bytes, expected {len(expected)}; first difference at "
                         f"offset {first}: {a[first:first + 16]!r} != {expected[first:first + 16]!r}")

def _run_in_threads(fn: Callable[[int], Any], jobs: int, workers: int = 8) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, range(jobs)))


# -- compressors ---------------------------------------------------------------------------------

_PAYLOADS: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "one-byte": lambda: b"\x07",
    "text": lambda: b"the quick brown fox jumps over the lazy dog\n" * 100,
    "zeros-1MiB": lambda: bytes(MiB),
    "incompressible-1MiB": lambda: random_bytes(MiB, seed=1),
    "mixed-4MiB+3": lambda: payload(4 * MiB + 3, seed=2),
    "mixed-16MiB": lambda: payload(16 * MiB, seed=3),
}


class CompressorContract:
    """What every :class:`~nydus_core.interfaces.Compressor` must do. Provide fixture ``compressor``."""

    @pytest.fixture
    def compressor(self) -> Compressor:
        """Override: return an instance of the compressor under test."""
        pytest.fail(f"{type(self).__name__} must define the 'compressor' fixture")

    def test_is_a_named_compressor(self, compressor: Compressor) -> None:
        assert isinstance(compressor, Compressor)
        assert isinstance(compressor.name, str) and compressor.name

    def test_upstream_ids(self, compressor: Compressor) -> None:
        """An upstream name carries upstream's ids; another name must not claim one of them."""
        if compressor.name in UPSTREAM_COMPRESSORS:
            algorithm_id, super_flag, toc_flag = UPSTREAM_COMPRESSORS[compressor.name]
            assert compressor.algorithm_id == algorithm_id
            assert compressor.super_flag == super_flag
            assert compressor.toc_flag == toc_flag
        else:
            taken = {ids[0] for ids in UPSTREAM_COMPRESSORS.values()}
            assert compressor.algorithm_id is None or compressor.algorithm_id not in taken, (
                f"'{compressor.name}' claims upstream's algorithm id {compressor.algorithm_id}"
            )

    @pytest.mark.parametrize("kind", list(_PAYLOADS))
    def test_round_trip(self, compressor: Compressor, kind: str) -> None:
        data = _PAYLOADS[kind]()
        packed = compressor.compress(data)
        assert isinstance(packed, bytes)
        out = compressor.decompress(packed, len(data))
        assert isinstance(out, bytes)
        assert_same_bytes(out, data)

    def test_compressible_data_shrinks(self, compressor: Compressor) -> None:
        if compressor.name == "none":
            assert compressor.compress(bytes(MiB)) == bytes(MiB)
        else:
            assert len(compressor.compress(bytes(MiB))) < MiB // 10

    def test_accepts_bytes_like_input(self, compressor: Compressor) -> None:
        data = payload(100_000, seed=4)
        # the interface takes any bytes-like object; its annotation says bytes (no Buffer type in 3.11)
        packed = compressor.compress(cast(bytes, bytearray(data)))
        assert compressor.decompress(cast(bytes, memoryview(packed)), len(data)) == data
        assert compressor.decompress(cast(bytes, bytearray(packed)), len(data)) == data
        assert compressor.decompress(compressor.compress(cast(bytes, memoryview(data))), len(data)) == data

    @pytest.mark.parametrize("delta", [-1, +1, +4096])
    def test_wrong_size_raises_integrity_error(self, compressor: Compressor, delta: int) -> None:
        data = payload(70_000, seed=5)
        packed = compressor.compress(data)
        with pytest.raises(IntegrityError):
            compressor.decompress(packed, len(data) + delta)

    def test_empty_input_with_nonzero_size_raises(self, compressor: Compressor) -> None:
        with pytest.raises(IntegrityError):
            compressor.decompress(compressor.compress(b""), 1)

    @pytest.mark.parametrize("seed", range(4))
    def test_garbage_raises_integrity_error(self, compressor: Compressor, seed: int) -> None:
        garbage = random_bytes(300 + seed, seed=100 + seed)
        with pytest.raises(IntegrityError):
            compressor.decompress(garbage, 65536)

    def test_truncated_input_raises_integrity_error(self, compressor: Compressor) -> None:
        data = payload(200_000, seed=6)
        packed = compressor.compress(data)
        with pytest.raises(IntegrityError):
            compressor.decompress(packed[: len(packed) // 2], len(data))

    def test_thread_safe(self, compressor: Compressor) -> None:
        inputs = [payload(50_000 + 977 * i, seed=10 + i) for i in range(8)]

        def job(i: int) -> bool:
            data = inputs[i % len(inputs)]
            return compressor.decompress(compressor.compress(data), len(data)) == data

        assert all(_run_in_threads(job, 64))


# -- digesters -----------------------------------------------------------------------------------


def _reference_for(name: str) -> Callable[[bytes], bytes] | None:
    if name == "sha256":
        return lambda data: hashlib.sha256(data).digest()
    if name == "blake3":
        import blake3  # the upstream default; installed wherever a blake3 digester is

        return lambda data: blake3.blake3(data).digest()
    return None


class DigesterContract:
    """What every :class:`~nydus_core.interfaces.Digester` must do. Provide fixture ``digester``.

    For names upstream knows (``sha256``, ``blake3``) the expected digests are computed with
    ``hashlib`` / ``blake3`` here; for other names also provide fixture ``reference``.
    """

    @pytest.fixture
    def digester(self) -> Digester:
        """Override: return an instance of the digester under test."""
        pytest.fail(f"{type(self).__name__} must define the 'digester' fixture")

    @pytest.fixture
    def reference(self, digester: Digester) -> Callable[[bytes], bytes]:
        """An independent implementation of the digest (override for non-upstream names)."""
        ref = _reference_for(digester.name)
        if ref is None:
            pytest.fail(f"'{digester.name}' is not an upstream digester: define the 'reference' fixture")
        return ref

    def test_is_a_named_digester(self, digester: Digester) -> None:
        assert isinstance(digester, Digester)
        assert isinstance(digester.name, str) and digester.name

    def test_upstream_ids(self, digester: Digester) -> None:
        if digester.name in UPSTREAM_DIGESTERS:
            assert (digester.algorithm_id, digester.super_flag) == UPSTREAM_DIGESTERS[digester.name]
        else:
            taken = {ids[0] for ids in UPSTREAM_DIGESTERS.values()}
            assert digester.algorithm_id is None or digester.algorithm_id not in taken

    def test_published_vectors(self, digester: Digester) -> None:
        for data, hexdigest in PUBLISHED_VECTORS.get(digester.name, {}).items():
            assert digester.digest(data).hex() == hexdigest

    @pytest.mark.parametrize("size", [0, 1, 63, 64, 1024, 1025, 65536, 3 * MiB + 17])
    def test_matches_reference(
        self, digester: Digester, reference: Callable[[bytes], bytes], size: int
    ) -> None:
        data = payload(size, seed=size)
        out = digester.digest(data)
        assert isinstance(out, bytes)
        assert out == reference(data)

    def test_digest_is_32_bytes(self, digester: Digester) -> None:
        assert digester.digest_size == 32
        assert len(digester.digest(b"nydus")) == 32
        assert len(digester.new().digest()) == 32

    def test_incremental_equals_one_shot(self, digester: Digester) -> None:
        data = payload(2 * MiB + 5, seed=7)
        rng = random.Random(8)
        h = digester.new()
        pos = 0
        while pos < len(data):
            step = rng.choice([0, 1, 7, 4096, 65537, 300_000])
            h.update(data[pos:pos + step])
            pos += step
        assert h.digest() == digester.digest(data)

    def test_new_objects_are_independent(self, digester: Digester) -> None:
        a, b = digester.new(), digester.new()
        a.update(b"first")
        b.update(b"second")
        assert a.digest() == digester.digest(b"first")
        assert b.digest() == digester.digest(b"second")

    def test_accepts_bytes_like_input(self, digester: Digester) -> None:
        data = payload(10_000, seed=9)
        expected = digester.digest(data)
        # the interface takes any bytes-like object; its annotation says bytes (no Buffer type in 3.11)
        assert digester.digest(cast(bytes, bytearray(data))) == expected
        assert digester.digest(cast(bytes, memoryview(data))) == expected

    def test_thread_safe(self, digester: Digester, reference: Callable[[bytes], bytes]) -> None:
        inputs = [payload(100_000 + i, seed=20 + i) for i in range(8)]
        expected = [reference(d) for d in inputs]
        assert all(_run_in_threads(lambda i: digester.digest(inputs[i % 8]) == expected[i % 8], 64))


# -- backends ------------------------------------------------------------------------------------


class BackendContract:
    """What every :class:`~nydus_core.interfaces.Backend` must do.

    Provide fixtures ``backend`` and ``put_blob``; set ``writable = True`` if ``write`` stores blobs
    (otherwise it must raise :class:`~nydus_core.errors.UnsupportedOperationError`).
    """

    writable: ClassVar[bool] = False

    @pytest.fixture
    def backend(self) -> Backend:
        """Override: return the backend under test."""
        pytest.fail(f"{type(self).__name__} must define the 'backend' fixture")

    @pytest.fixture
    def put_blob(self) -> Callable[[str, bytes], None]:
        """Override: return a function storing ``data`` as blob ``blob_id`` where ``backend`` reads."""
        pytest.fail(f"{type(self).__name__} must define the 'put_blob' fixture")

    @pytest.fixture
    def blob(self, put_blob: Callable[[str, bytes], None]) -> tuple[str, bytes]:
        """A stored blob of 3 MiB + 123 bytes: ``(blob_id, data)``."""
        data = random_bytes(3 * MiB + 123, seed=30)
        blob_id = blob_id_of(data)
        put_blob(blob_id, data)
        return blob_id, data

    @staticmethod
    def missing_id() -> str:
        """A blob id no test stores."""
        return blob_id_of(b"this blob was never stored")

    def test_is_a_named_backend(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert isinstance(backend.name, str) and backend.name

    def test_size(self, backend: Backend, blob: tuple[str, bytes]) -> None:
        blob_id, data = blob
        assert backend.size(blob_id) == len(data)

    @pytest.mark.parametrize(
        "where",
        ["start", "start-1", "middle", "unaligned", "end", "last-byte", "whole"],
    )
    def test_ranged_read(self, backend: Backend, blob: tuple[str, bytes], where: str) -> None:
        blob_id, data = blob
        size = len(data)
        offset, length = {
            "start": (0, 4096),
            "start-1": (0, 1),
            "middle": (MiB, MiB),
            "unaligned": (MiB + 7, 100_003),
            "end": (size - 4096, 4096),
            "last-byte": (size - 1, 1),
            "whole": (0, size),
        }[where]
        out = backend.read(blob_id, offset, length)
        assert isinstance(out, bytes)
        assert_same_bytes(out, data[offset:offset + length])

    @pytest.mark.parametrize("past", [1, 4096, MiB])
    def test_read_past_end_is_short(self, backend: Backend, blob: tuple[str, bytes], past: int) -> None:
        blob_id, data = blob
        assert_same_bytes(backend.read(blob_id, len(data) - 10, 10 + past), data[-10:])

    def test_read_at_or_after_end_is_empty(self, backend: Backend, blob: tuple[str, bytes]) -> None:
        blob_id, data = blob
        assert_same_bytes(backend.read(blob_id, len(data), 100), b"")
        assert_same_bytes(backend.read(blob_id, len(data) + 4096, 100), b"")

    def test_zero_length_read(self, backend: Backend, blob: tuple[str, bytes]) -> None:
        blob_id, _ = blob
        assert_same_bytes(backend.read(blob_id, 100, 0), b"")

    def test_readv(self, backend: Backend, blob: tuple[str, bytes]) -> None:
        blob_id, data = blob
        size = len(data)
        ranges = [(MiB, 4096), (0, 10), (5, 100), (100, 50_000), (size - 3, 3), (2 * MiB, MiB + 1),
                  (size - 5, 100), (0, 0)]
        out = backend.readv(blob_id, ranges)
        assert [bytes(x) for x in out] == [data[o:o + n] for o, n in ranges]

    def test_small_and_empty_blobs(self, backend: Backend, put_blob: Callable[[str, bytes], None]) -> None:
        for data in (b"x", b""):
            blob_id = blob_id_of(data)
            put_blob(blob_id, data)
            assert backend.size(blob_id) == len(data)
            assert_same_bytes(backend.read(blob_id, 0, 10), data)
            assert backend.exists(blob_id)

    def test_several_blobs_are_separate(
        self, backend: Backend, put_blob: Callable[[str, bytes], None], blob: tuple[str, bytes]
    ) -> None:
        other = random_bytes(10_000, seed=31)
        put_blob(blob_id_of(other), other)
        assert_same_bytes(backend.read(blob_id_of(other), 0, 20_000), other)
        assert_same_bytes(backend.read(blob[0], 0, 10_000), blob[1][:10_000])

    def test_exists(self, backend: Backend, blob: tuple[str, bytes]) -> None:
        assert backend.exists(blob[0]) is True
        assert backend.exists(self.missing_id()) is False

    def test_missing_blob_raises_not_found(self, backend: Backend) -> None:
        missing = self.missing_id()
        with pytest.raises(BlobNotFoundError) as info:
            backend.size(missing)
        assert missing in str(info.value)
        with pytest.raises(BlobNotFoundError):
            backend.read(missing, 0, 10)
        with pytest.raises(BlobNotFoundError):
            backend.readv(missing, [(0, 10), (20, 10)])

    def test_concurrent_reads(
        self, backend: Backend, put_blob: Callable[[str, bytes], None], blob: tuple[str, bytes]
    ) -> None:
        second = random_bytes(MiB + 5, seed=32)
        put_blob(blob_id_of(second), second)
        blobs = [blob, (blob_id_of(second), second)]
        rng = random.Random(33)
        jobs = []
        for _ in range(200):
            blob_id, data = rng.choice(blobs)
            offset = rng.randrange(len(data))
            jobs.append((blob_id, data, offset, rng.randrange(1, 300_000)))

        def job(i: int) -> bool:
            blob_id, data, offset, length = jobs[i]
            return backend.read(blob_id, offset, length) == data[offset:offset + length]

        results = _run_in_threads(job, len(jobs))
        assert all(results), f"{results.count(False)} concurrent reads returned wrong bytes"

    def test_write(self, backend: Backend) -> None:
        """A writable backend stores a streamed blob; any other raises UnsupportedOperationError."""
        data = payload(5 * MiB + 11, seed=34)
        blob_id = blob_id_of(data)
        if not self.writable:
            with pytest.raises(UnsupportedOperationError):
                backend.write(blob_id, io.BytesIO(data), len(data))
            return
        backend.write(blob_id, io.BytesIO(data), len(data))
        assert backend.exists(blob_id)
        assert backend.size(blob_id) == len(data)
        assert_same_bytes(backend.read(blob_id, 0, len(data)), data)
        assert_same_bytes(backend.read(blob_id, 3 * MiB, 1000), data[3 * MiB:3 * MiB + 1000])

    def test_write_without_size_and_overwrite(self, backend: Backend) -> None:
        small = b"first version"
        blob_id = blob_id_of(small)
        if not self.writable:
            with pytest.raises(UnsupportedOperationError):
                backend.write(blob_id, io.BytesIO(small))
            assert backend.exists(blob_id) is False
            return
        backend.write(blob_id, io.BytesIO(small))
        assert_same_bytes(backend.read(blob_id, 0, 100), small)
        backend.write(blob_id, io.BytesIO(small * 2))
        assert backend.size(blob_id) == 2 * len(small)
        assert_same_bytes(backend.read(blob_id, 0, 100), small * 2)

    def test_short_write_stores_nothing(self, backend: Backend) -> None:
        data = payload(100_000, seed=35)
        blob_id = blob_id_of(data)
        with pytest.raises(UnsupportedOperationError if not self.writable else NydusError):
            backend.write(blob_id, io.BytesIO(data[:50_000]), len(data))
        assert backend.exists(blob_id) is False

    def test_close_is_idempotent(self, backend: Backend, blob: tuple[str, bytes]) -> None:
        backend.read(blob[0], 0, 10)
        backend.close()
        backend.close()


# -- caches --------------------------------------------------------------------------------------


class CacheContract:
    """What every :class:`~nydus_core.interfaces.CachePolicy` must do (the basics; extend it).

    Provide fixture ``cache_policy``: a function ``work_dir -> CachePolicy`` opening the cache kept in
    ``work_dir`` (called again with the same directory to check persistence).
    """

    @pytest.fixture
    def cache_policy(self) -> Callable[[Path], CachePolicy]:
        """Override: return a factory ``work_dir -> CachePolicy``."""
        pytest.fail(f"{type(self).__name__} must define the 'cache_policy' fixture")

    @pytest.fixture
    def work_dir(self, tmp_path: Path) -> Path:
        """The cache's working directory."""
        path = tmp_path / "cache"
        path.mkdir()
        return path

    @pytest.fixture
    def sample(self) -> SampleBlob:
        """A blob with five chunks of assorted sizes (see :func:`make_sample_blob`)."""
        return make_sample_blob()

    def test_is_a_named_cache_policy(
        self, cache_policy: Callable[[Path], CachePolicy], work_dir: Path
    ) -> None:
        policy = cache_policy(work_dir)
        assert isinstance(policy, CachePolicy)
        assert isinstance(policy.name, str) and policy.name
        policy.close()

    def test_miss_put_hit(
        self, cache_policy: Callable[[Path], CachePolicy], work_dir: Path, sample: SampleBlob
    ) -> None:
        policy = cache_policy(work_dir)
        cache = policy.open_blob(sample.blob)
        assert isinstance(cache, BlobCache)
        chunk, data = sample.chunks[0], sample.chunk_data[0]
        assert cache.is_ready(chunk) is False
        assert cache.get(chunk) is None
        cache.put(chunk, data)
        assert cache.is_ready(chunk) is True
        assert_same_bytes(cache.get(chunk), data)
        cache.close()
        policy.close()

    def test_chunks_are_independent(
        self, cache_policy: Callable[[Path], CachePolicy], work_dir: Path, sample: SampleBlob
    ) -> None:
        policy = cache_policy(work_dir)
        cache = policy.open_blob(sample.blob)
        cache.put(sample.chunks[1], sample.chunk_data[1])
        cache.put(sample.chunks[3], sample.chunk_data[3])
        for i, chunk in enumerate(sample.chunks):
            if i in (1, 3):
                assert_same_bytes(cache.get(chunk), sample.chunk_data[i])
                assert cache.is_ready(chunk)
            else:
                assert cache.get(chunk) is None and not cache.is_ready(chunk)
        cache.close()
        policy.close()

    def test_persists_across_reopen(
        self, cache_policy: Callable[[Path], CachePolicy], work_dir: Path, sample: SampleBlob
    ) -> None:
        policy = cache_policy(work_dir)
        cache = policy.open_blob(sample.blob)
        for i in (0, 2, 4):
            cache.put(sample.chunks[i], sample.chunk_data[i])
        cache.close()
        policy.close()

        policy = cache_policy(work_dir)
        cache = policy.open_blob(sample.blob)
        for i, chunk in enumerate(sample.chunks):
            if i in (0, 2, 4):
                assert cache.is_ready(chunk) and cache.get(chunk) == sample.chunk_data[i]
            else:
                assert not cache.is_ready(chunk) and cache.get(chunk) is None
        cache.close()
        policy.close()

    def test_blobs_are_separate(
        self, cache_policy: Callable[[Path], CachePolicy], work_dir: Path, sample: SampleBlob
    ) -> None:
        other = make_sample_blob((4096, 8192), seed=1, blob_index=1)
        policy = cache_policy(work_dir)
        a, b = policy.open_blob(sample.blob), policy.open_blob(other.blob)
        a.put(sample.chunks[0], sample.chunk_data[0])
        assert b.get(other.chunks[0]) is None
        b.put(other.chunks[0], other.chunk_data[0])
        assert a.get(sample.chunks[0]) == sample.chunk_data[0]
        assert b.get(other.chunks[0]) == other.chunk_data[0]
        a.close()
        b.close()
        policy.close()

    def test_concurrent_puts(
        self, cache_policy: Callable[[Path], CachePolicy], work_dir: Path
    ) -> None:
        sample = make_sample_blob([4096 * (1 + i % 5) for i in range(32)], seed=2)
        policy = cache_policy(work_dir)
        cache = policy.open_blob(sample.blob)

        def job(i: int) -> None:
            cache.put(sample.chunks[i], sample.chunk_data[i])

        _run_in_threads(job, len(sample.chunks))
        assert [cache.get(c) for c in sample.chunks] == sample.chunk_data
        cache.close()
        policy.close()
