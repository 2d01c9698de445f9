"""Small, real implementations of the interfaces for tests.

- :class:`MemoryBackend`: blobs in a dict (writable); :class:`DirBackend`: blobs as files in a
  directory (read-only), for tests that must not depend on the localfs plugin.
- :class:`RecordingBackend` wraps any backend and records every ranged read (blob, offset, length)
  so tests can assert exactly what was fetched; it can also slow reads down.
- :class:`DirectoryChunkCache`: a one-file-per-chunk cache.

The core runs the contract suites on them (tests/test_contracts_core.py), and tests of the read
pipeline can use them where the real plugins are not the subject.

They are not registered as plugins.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from nydus_core.errors import BackendError, BlobNotFoundError, CacheError, ConfigError
from nydus_core.interfaces import Backend, BlobCache, CachePolicy

__all__ = ["DirBackend", "DirectoryChunkCache", "MemoryBackend", "RecordingBackend"]


class MemoryBackend(Backend):
    """Blobs held in a dict, keyed by blob id. Thread-safe; writable."""

    name = "memory"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config or {})
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.requests = 0

    def put(self, blob_id: str, data: bytes) -> None:
        """Store ``data`` as blob ``blob_id`` (test setup)."""
        with self._lock:
            self._blobs[blob_id] = bytes(data)

    def _get(self, blob_id: str) -> bytes:
        with self._lock:
            self.requests += 1
            try:
                return self._blobs[blob_id]
            except KeyError:
                raise BlobNotFoundError(f"memory backend: blob {blob_id} not found") from None

    def size(self, blob_id: str) -> int:
        """Return the blob's size."""
        return len(self._get(blob_id))

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset`` (fewer at the end, none past it)."""
        if offset < 0 or length < 0:
            raise BackendError(f"memory backend: invalid range offset={offset} length={length}")
        return self._get(blob_id)[offset:offset + length]

    def write(self, blob_id: str, stream: BinaryIO, size: int | None = None) -> None:
        """Store the bytes of ``stream``; a short stream (fewer than ``size`` bytes) stores nothing."""
        data = stream.read()
        if size is not None and len(data) != size:
            raise BackendError(f"memory backend: blob {blob_id}: got {len(data)} bytes, expected {size}")
        self.put(blob_id, data)


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
        self.name = getattr(inner, "name", "recording")  # type: ignore[misc]  # name is a ClassVar; a wrapper takes its inner's
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


class _DirectoryBlobCache(BlobCache):
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, chunk: Any) -> Path:
        return self.directory / str(chunk.index)

    def is_ready(self, chunk: Any) -> bool:
        return self._path(chunk).exists()

    def get(self, chunk: Any) -> bytes | None:
        try:
            return self._path(chunk).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"{self._path(chunk)}: {exc.strerror}") from None

    def put(self, chunk: Any, data: bytes) -> None:
        if len(data) != chunk.uncompressed_size:
            raise CacheError(
                f"chunk {chunk.index}: {len(data)} bytes given, record says {chunk.uncompressed_size}"
            )
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self._path(chunk))  # the rename is the "mark ready"
        except OSError as exc:
            raise CacheError(f"{self.directory}: {exc.strerror}") from None


class DirectoryChunkCache(CachePolicy):
    """A cache keeping each chunk in its own file, ``<work_dir>/<blob_id>/<chunk index>``.

    Writing to a temporary file and renaming it marks a chunk ready, so it survives restarts and
    never shows partial data. Simple and slow; it exists to check the cache contract itself.
    """

    name = "test-directory"

    def __init__(self, config: Mapping[str, Any], *, validate: bool = False) -> None:
        super().__init__(self.validate_config(config), validate=validate)
        self.work_dir = Path(self.config["work_dir"])

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Require ``work_dir``."""
        if not config.get("work_dir"):
            raise ConfigError("is required", key="work_dir")
        return dict(config)

    def open_blob(self, blob: Any) -> BlobCache:
        """Return the cache of ``blob`` (a directory named by its id)."""
        directory = self.work_dir / blob.blob_id
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"{directory}: {exc.strerror}") from None
        return _DirectoryBlobCache(directory)
