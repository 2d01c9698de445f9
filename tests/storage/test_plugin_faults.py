"""The read pipeline never hangs or leaks a foreign exception when the image is closed under it or a
plugin (digester, cache) misbehaves: every reader gets a NydusError or its bytes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from nydus_testkit.fakes import DirBackend, DirectoryChunkCache
from nydus_testkit.samples import random_bytes
from nydus_testsupport.storage_helpers import build_image

from nydus_core.errors import CacheError, IntegrityError
from nydus_core.interfaces import BlobCache
from nydus_core.rafs.image import open_image
from nydus_core.storage import ReadPipeline, blob_state

MiB = 1 << 20


def _image(tmp_path: Path, size: int) -> tuple[object, int, str, bytes]:
    data = random_bytes(size, 5)
    boot, blobs, _ = build_image(str(tmp_path), {"f": data}, compressor="none", digester="sha256")
    img = open_image(boot)
    return img, img.resolve("/f"), blobs, data


def _finishes(fn: object, seconds: float = 10) -> bool:
    t = threading.Thread(target=fn, daemon=True)
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


def test_digester_plugin_bug_fails_only_its_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img, ino, blobs, _data = _image(tmp_path, 2 * MiB)

    class Broken:
        def digest(self, data: bytes) -> bytes:
            raise TypeError("digester plugin bug")

    # the image's digester, as the plugin registry would hand it out, is broken
    monkeypatch.setattr(blob_state, "digester_by_id", lambda algorithm_id, where=None: Broken())
    p = ReadPipeline(img, DirBackend({"dir": blobs}), digest_validate=True, amplify_io=0, workers=2)
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

    class BrokenCache(DirectoryChunkCache):
        def open_blob(self, blob: Any) -> BlobCache:
            bc = super().open_blob(blob)

            def boom(chunk: object, chunk_data: bytes) -> None:
                raise ValueError("cache plugin bug")

            bc.put = boom
            return bc

    cache = BrokenCache({"work_dir": str(tmp_path / "cache")})
    p = ReadPipeline(img, DirBackend({"dir": blobs}), cache, amplify_io=0, workers=2)
    assert p.read(ino, 0, 10) == data[:10]
    assert p.wait_idle(1)
    p.close()
