"""Helpers for testing the read pipeline, caches and prefetchers against real components.

- :class:`RecordingBackend` wraps any backend and records every ranged read (blob, offset, length)
  so tests can assert exactly what was fetched; it can also slow reads down.
- :class:`DirBackend` is the smallest directory-of-blobs backend, for core tests that must not
  depend on the localfs plugin.
- :func:`verify_blob_cache` checks that every chunk a blob cache marks ready holds bytes whose digest
  matches the chunk record (what the crash test asserts after each kill).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import BlobNotFoundError
from ..interfaces import Backend, Digester
from ..rafs.model import ChunkInfo

__all__ = ["DirBackend", "RecordingBackend", "verify_blob_cache"]


class DirBackend(Backend):
    """Blobs as files named by id in ``config["dir"]`` (read-only)."""

    name = "testdir"

    def _path(self, blob_id: str) -> str:
        path = os.path.join(self.config["dir"], blob_id)
        if not os.path.isfile(path):
            raise BlobNotFoundError(f"blob {blob_id} not found in {self.config['dir']}")
        return path

    def size(self, blob_id: str) -> int:
        """Return the blob's size."""
        return os.path.getsize(self._path(blob_id))

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Return a range of the blob."""
        with open(self._path(blob_id), "rb") as f:
            return os.pread(f.fileno(), length, offset)


class RecordingBackend(Backend):
    """Wraps ``inner`` and records every ``read`` as ``(blob_id, offset, length, returned)``.

    ``delay`` seconds are slept before each read (to widen races in concurrency tests).
    """

    def __init__(self, inner: Backend, *, delay: float = 0.0) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.name = getattr(inner, "name", "recording")  # type: ignore[misc]
        self.delay = delay
        self._lock = threading.Lock()
        self.requests: list[tuple[str, int, int, int]] = []

    def size(self, blob_id: str) -> int:
        """Return the inner backend's answer."""
        return self.inner.size(blob_id)

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Read through the inner backend, recording the request."""
        if self.delay:
            time.sleep(self.delay)
        data = self.inner.read(blob_id, offset, length)
        with self._lock:
            self.requests.append((blob_id, offset, length, len(data)))
        return data

    def bytes_fetched(self) -> int:
        """Return the total bytes returned by the inner backend."""
        with self._lock:
            return sum(r[3] for r in self.requests)

    def ranges(self) -> list[tuple[str, int, int]]:
        """Return ``(blob_id, offset, length)`` of every request so far."""
        with self._lock:
            return [(b, o, n) for b, o, n, _ in self.requests]

    def reset(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        """Close the inner backend."""
        self.inner.close()


def verify_blob_cache(data_path: str | os.PathLike[str], ready: Iterable[ChunkInfo],
                      digester: Digester) -> list[ChunkInfo]:
    """Return the chunks of ``ready`` whose bytes in the cache file ``data_path`` do not match
    their digest (an empty list means the cache is consistent)."""
    bad: list[ChunkInfo] = []
    with open(data_path, "rb") as f:
        fd = f.fileno()
        for c in ready:
            data = os.pread(fd, c.uncompressed_size, c.uncompressed_offset)
            if digester.digest(data) != c.block_id:
                bad.append(c)
    return bad


def chunks_by_key(chunks: Iterable[ChunkInfo]) -> Mapping[tuple[int, int], ChunkInfo]:
    """Return the distinct stored chunks of ``chunks`` keyed by (blob index, compressed offset)."""
    out: dict[tuple[int, int], ChunkInfo] = {}
    for c in chunks:
        out.setdefault((c.blob_index, c.compressed_offset), c)
    return out


def all_chunks(image: Any) -> list[ChunkInfo]:
    """Return every chunk record of every regular file of ``image`` (walk order)."""
    out: list[ChunkInfo] = []
    for _path, ino in image.walk():
        if image.getattr(ino).is_reg:
            out.extend(image.chunks(ino))
    return out
