"""The read pipeline never hangs or leaks a foreign exception when the image is closed under it or a
plugin (digester, cache) misbehaves: every reader gets a NydusError or its bytes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from nydus_testkit.fakes import DirBackend, DirectoryChunkCache
from nydus_testkit.samples import random_bytes
from nydus_testsupport.storage_helpers import build_image

from nydus_core.errors import CacheError, IntegrityError
from nydus_core.rafs.image import open_image
from nydus_core.storage import ReadPipeline

MiB = 1 << 20


def _image(tmp_path: Path, size: int) -> tuple[object, int, str, bytes]:
    data = random_bytes(size, 5)
    boot, blobs, _ = build_image(str(tmp_path), {"f": data}, compressor="none", digester="sha256")
    img = open_image(boot)
    return img, img.resolve("/f"), blobs, data


def _finishes(fn: object, seconds: float = 10) -> bool:
    t = threading.Thread(target=fn, daemon=True)  # type: ignore[arg-type]
    t.start()
    t.join(seconds)
    return not t.is_alive()


def test_read_after_close_fails_cleanly(tmp_path: Path) -> None:
    img, ino, blobs, _data = _image(tmp_path, 6 * MiB)
    p = ReadPipeline(img, DirBackend({"dir": blobs}), amplify_io=0, workers=2)
    p.close()
    with pytest.raises(CacheError, match="closed"):
        p.read(ino, 0, 6 * MiB)
    assert p.wait_idle(1)

    def again() -> None:
        with pytest.raises(CacheError):
            p.read(ino, 5 * MiB, 10)
    assert _finishes(again)


def test_digester_plugin_bug_fails_only_its_readers(tmp_path: Path) -> None:
    img, ino, blobs, _data = _image(tmp_path, 2 * MiB)
    p = ReadPipeline(img, DirBackend({"dir": blobs}), digest_validate=True, amplify_io=0, workers=2)

    class Broken:
        def digest(self, data: bytes) -> bytes:
            raise TypeError("digester plugin bug")

    for b in p.blobs:
        b.digester = Broken()
    with pytest.raises(IntegrityError, match="digester plugin bug"):
        p.read(ino, 0, 2 * MiB)

    def later() -> None:
        with pytest.raises(IntegrityError):
            p.read(ino, MiB, 10)
    assert _finishes(later)
    assert p.wait_idle(1)
    p.close()


def test_cache_plugin_bug_still_serves_the_bytes(tmp_path: Path) -> None:
    img, ino, blobs, data = _image(tmp_path, 3 * MiB)
    cache = DirectoryChunkCache({"work_dir": str(tmp_path / "cache")})
    p = ReadPipeline(img, DirBackend({"dir": blobs}), cache, amplify_io=0, workers=2)

    def boom(chunk: object, chunk_data: bytes) -> None:
        raise ValueError("cache plugin bug")

    for b in p.blobs:
        b.blob_cache.put = boom  # type: ignore[method-assign]
    assert p.read(ino, 0, 10) == data[:10]
    assert p.wait_idle(1)
    p.close()
