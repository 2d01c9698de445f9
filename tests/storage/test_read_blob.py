"""`ReadPipeline.read_blob`: a blob's uncompressed layout (each chunk at its uncompressed offset,
zeros elsewhere), on images built with `nydus-image create` and on upstream's own images, through
the same fetch, dedup, verify and cache path as file reads."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from nydus_core.errors import IntegrityError
from nydus_core.fs import RafsFS, open_fs
from nydus_core.rafs.image import RafsImage
from nydus_core.rafs.model import ChunkInfo
from nydus_core.storage import ReadPipeline

BIN = Path(sys.executable).parent / "nydus-image"
CHUNK = 64 << 10
UPSTREAM = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "upstream"


def _tree(root: Path, seed: int, n: int = 14) -> dict[str, bytes]:
    """Files of many sizes: empty, a few bytes, several chunks, exactly a chunk; some repeat."""
    rnd = random.Random(seed)
    files: dict[str, bytes] = {}
    sizes = [0, 1, 4095, 4096, CHUNK, CHUNK + 1, 3 * CHUNK + 17, 200_000] + [
        rnd.randrange(1, 5 * CHUNK) for _ in range(n - 8)]
    for k, size in enumerate(sizes):
        data = rnd.randbytes(size // 2) + bytes(size - size // 2)  # half random, half compressible
        files[f"/d{k % 3}/f{k:02d}"] = data
    files["/d0/dup"] = files["/d1/f07"]  # identical content: deduplicated chunks
    for rel, data in files.items():
        p = root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def _create(src: Path, out: Path, *args: str) -> tuple[Path, Path]:
    boot, blobs = out / "image.boot", out / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(BIN), "create", "-B", str(boot), "-D", str(blobs),
                           "--chunk-size", hex(CHUNK), *args, str(src)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return boot, blobs


def _config(blobs: Path, cache: Path | None, **extra: object) -> dict[str, object]:
    device: dict[str, object] = {"backend": {"type": "localfs", "config": {"dir": str(blobs)}}}
    if cache is not None:
        device["cache"] = {"type": "blobcache", "config": {"work_dir": str(cache)}}
    return {"device": device, "mode": "direct", "digest_validate": True, **extra}


def _expected_layout(image: RafsImage, fs: RafsFS, blob_index: int) -> bytes:
    """The blob's layout rebuilt from the files' bytes and their chunk records."""
    size = image.blobs[blob_index].uncompressed_size
    out = bytearray(size)
    for path, ino in image.walk():
        attrs = image.getattr(ino)
        if not attrs.is_reg or not attrs.size:
            continue
        data = fs.read_bytes(path)
        for c in image.chunks(ino):
            if c.blob_index == blob_index:
                end = c.uncompressed_offset + c.uncompressed_size
                out[len(out):end] = bytes(max(0, end - len(out)))
                out[c.uncompressed_offset:end] = data[c.file_offset:c.file_offset + c.uncompressed_size]
    return bytes(out)


def _pipeline(fs: RafsFS) -> ReadPipeline:
    assert fs.pipeline is not None
    return fs.pipeline


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("readblob")
    src = root / "src"
    files = _tree(src, 7)
    boot, blobs = _create(src, root / "img")
    return boot, blobs, files


def test_blob_layout_matches_files_and_the_blobcache_data_file(
        built: tuple[Path, Path, dict[str, bytes]], tmp_path: Path) -> None:
    boot, blobs, files = built
    cache = tmp_path / "cache"
    with open_fs(boot, _config(blobs, cache)) as fs:
        pipe = _pipeline(fs)
        [info] = fs.image.blobs
        for path, data in files.items():  # the files themselves are right
            assert fs.read_bytes(path) == data
        want = _expected_layout(fs.image, fs, 0)
        assert pipe.blob_size(0) == len(want) == info.uncompressed_size
        whole = pipe.read_blob(0, 0, len(want) + 12345)  # short at the layout's end
        assert whole == want
        assert pipe.wait_idle(10)
        # the blobcache keeps the same layout in <blob id>.blob.data
        data_file = cache / f"{info.blob_id}.blob.data"
        assert data_file.read_bytes() == want
        assert pipe.read_blob(0, len(want), 10) == b""


def test_cold_blob_ranges_fetch_each_chunk_once(built: tuple[Path, Path, dict[str, bytes]],
                                                tmp_path: Path) -> None:
    boot, blobs, _files = built
    with open_fs(boot, _config(blobs, None)) as ref:
        want = _expected_layout(ref.image, ref, 0)
    with open_fs(boot, _config(blobs, tmp_path / "cache", amplify_io=0)) as fs:
        pipe = _pipeline(fs)
        assert pipe.read_blob_if_cached(0, 0, 4096) is None  # nothing cached yet, nothing fetched
        assert fs.metrics()["backend"]["read_count"] == 0
        rnd = random.Random(3)
        for _ in range(200):  # ranges crossing chunk boundaries, holes and the end
            off = rnd.randrange(0, len(want) + 100)
            size = rnd.choice([1, 4096, CHUNK - 1, CHUNK + 4097, 3 * CHUNK])
            assert pipe.read_blob(0, off, size) == want[off:off + size]
        assert pipe.read_blob(0, 0, len(want)) == want
        fetched = fs.metrics()["backend"]["read_amount_total"]
        blob_data = sum(c.compressed_size for c in _unique_chunks(fs.image))
        assert fetched == blob_data  # every chunk fetched exactly once, nothing else
        assert pipe.read_blob_if_cached(0, 0, len(want)) == want  # now all from the cache
        assert fs.metrics()["backend"]["read_amount_total"] == fetched


def _unique_chunks(image: RafsImage) -> list[ChunkInfo]:
    seen: dict[tuple[int, int], ChunkInfo] = {}
    for _path, ino in image.walk():
        if image.getattr(ino).is_reg:
            for c in image.chunks(ino):
                seen[(c.blob_index, c.compressed_offset)] = c
    return list(seen.values())


def test_corrupt_chunk_fails_blob_reads_of_that_chunk_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, 11)
    boot, blobs = _create(src, tmp_path / "img", "--compressor", "none")
    with open_fs(boot, _config(blobs, None)) as ref:
        want = _expected_layout(ref.image, ref, 0)
        victim = max(_unique_chunks(ref.image), key=lambda c: c.uncompressed_offset)
    blob_file = next(blobs.iterdir())
    raw = bytearray(blob_file.read_bytes())
    raw[victim.compressed_offset] ^= 0xFF
    blob_file.write_bytes(bytes(raw))
    cache = tmp_path / "cache"
    with open_fs(boot, _config(blobs, cache, amplify_io=0)) as fs:
        pipe = _pipeline(fs)
        with pytest.raises(IntegrityError, match=blob_file.name):
            pipe.read_blob(0, victim.uncompressed_offset, 1)
        before = victim.uncompressed_offset
        assert pipe.read_blob(0, 0, before) == want[:before]  # the other chunks are fine
        assert pipe.read_blob_if_cached(0, victim.uncompressed_offset, 1) is None  # not cached


def test_two_blobs_of_a_layered_image(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    _tree(lower, 1, 9)
    _tree(upper, 2, 9)
    (upper / "d0" / "only-upper").write_bytes(os.urandom(3 * CHUNK))
    parent, blobs = _create(lower, tmp_path / "l")
    boot, _ = _create(upper, tmp_path / "l2", "--parent-bootstrap", str(parent))
    for b in (tmp_path / "l2" / "blobs").iterdir():
        os.replace(b, blobs / b.name)
    with open_fs(boot, _config(blobs, tmp_path / "cache")) as fs:
        pipe = _pipeline(fs)
        assert len(fs.image.blobs) == 2
        for bi in range(2):
            want = _expected_layout(fs.image, fs, bi)
            assert pipe.read_blob(bi, 0, len(want)) == want
        with pytest.raises(IndexError):
            pipe.read_blob(2, 0, 1)


@pytest.mark.parametrize("boot", ["rafs-v5/sha256-nocompress-repeatable", "rafs-v6/rafs-v6-2.2.boot"])
def test_upstream_images(boot: str, tmp_path: Path) -> None:
    path = UPSTREAM / boot
    if not path.exists():
        pytest.skip(f"upstream fixtures absent ({UPSTREAM})")
    with open_fs(path, _config(path.parent / "blobs", tmp_path / "cache")) as fs:
        pipe = _pipeline(fs)
        want = _expected_layout(fs.image, fs, 0)
        size = pipe.blob_size(0)
        assert size >= len(want) > 0
        got = pipe.read_blob(0, 0, size)
        assert got[:len(want)] == want and not any(got[len(want):])


def test_read_if_cached_serves_hits_only_and_counts_them(built: tuple[Path, Path, dict[str, bytes]],
                                                         tmp_path: Path) -> None:
    """`read_if_cached` walks the chunks as `read` does, but never fetches: None until cached."""
    boot, blobs, files = built
    with open_fs(boot, _config(blobs, tmp_path / "cache", access_pattern=True)) as fs:
        pipe = _pipeline(fs)
        path, data = max(files.items(), key=lambda kv: len(kv[1]))
        ino = fs.resolve(path)
        assert pipe.read_if_cached(ino, 0, len(data)) is None
        assert fs.metrics()["backend"]["read_count"] == 0
        assert fs.metrics()["reads"]["reads"] == 0  # a miss is not a read
        assert pipe.read(ino, CHUNK + 5, 10) == data[CHUNK + 5:CHUNK + 15]  # fetches one chunk
        assert pipe.wait_idle(10)
        fetched = fs.metrics()["backend"]["read_amount_total"]
        assert pipe.read_if_cached(ino, CHUNK + 1, CHUNK - 1) == data[CHUNK + 1:2 * CHUNK]
        assert pipe.read_if_cached(ino, CHUNK - 1, 2) is None  # straddles an uncached chunk
        assert pipe.read_if_cached(ino, len(data), 10) == b""  # at the end of the file
        assert pipe.read(ino, 0, len(data)) == data
        assert pipe.wait_idle(10)
        assert pipe.read_if_cached(ino, 0, len(data) + 100) == data
        m = fs.metrics()
        assert m["backend"]["read_amount_total"] > fetched
        assert m["reads"]["reads"] == 5  # two reads, three served from the cache
        assert m["blobcache"]["whole_hits"] == 2  # the two non-empty reads from the cache
        assert fs.access_pattern() == [path]
    with open_fs(boot, _config(blobs, None)) as fs:  # no cache: nothing is ever "cached"
        pipe = _pipeline(fs)
        ino = fs.resolve(path)
        assert pipe.read(ino, 0, 10) == data[:10]
        assert pipe.read_if_cached(ino, 0, 10) is None
