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

__all__ = ["DirBackend", "RecordingBackend", "all_chunks", "build_image", "chunks_by_key", "localfs_config",
           "verify_blob_cache", "write_tree"]


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


def write_tree(root: str | os.PathLike[str], files: Mapping[str, bytes | str | None]) -> None:
    """Create ``files`` under ``root``: bytes = a regular file, None = a directory, str starting with
    ``"->"`` = a symlink to the rest of the string."""
    for path, content in sorted(files.items()):
        target = os.path.join(os.fspath(root), path.lstrip("/"))
        if content is None:
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if isinstance(content, str):
            os.symlink(content.removeprefix("->"), target)
        else:
            with open(target, "wb") as f:
                f.write(content)


def build_image(workdir: str | os.PathLike[str], files: Mapping[str, bytes | str | None], *,
                name: str = "image", **options: Any) -> tuple[str, str, Any]:
    """Build a RAFS v6 image of ``files`` with :mod:`nydus_core.builder` (``options`` are
    :class:`~nydus_core.builder.BuildOptions` fields). Returns ``(bootstrap, blob_dir, result)``."""
    from ..builder import BuildOptions, build

    base = os.path.join(os.fspath(workdir), name)
    src, blob_dir, boot = base + ".src", base + ".blobs", base + ".boot"
    os.makedirs(src, exist_ok=True)
    write_tree(src, files)
    result = build(src, bootstrap=boot, blob_dir=blob_dir, options=BuildOptions(**options))
    return boot, blob_dir, result


def localfs_config(blob_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, *,
                   cache_config: Mapping[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """Return a nydusd v1 config dict: the localfs backend on ``blob_dir``, a blobcache in
    ``cache_dir`` (if given, plus ``cache_config`` keys), and ``top`` keys (``digest_validate``,
    ``amplify_io``, ``fs_prefetch``...)."""
    device: dict[str, Any] = {"backend": {"type": "localfs", "config": {"dir": os.fspath(blob_dir)}}}
    if cache_dir is not None:
        device["cache"] = {"type": "blobcache",
                           "config": {"work_dir": os.fspath(cache_dir), **(cache_config or {})}}
    return {"device": device, "mode": "direct", **top}
