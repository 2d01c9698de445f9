"""The blob-device filesystem of the ``erofs`` driver: one read-only regular file per data blob.

Each file is named by its blob id; its size is the blob's uncompressed layout rounded up to 4 KiB,
its bytes that layout (each chunk at its ``uncompressed_offset``, zeros elsewhere), which is what
the kernel's EROFS driver reads as the image's extra device. A read goes through the image's
:class:`~nydus_core.storage.ReadPipeline` (``read_blob_if_cached`` inline, else ``read_blob``:
fetch, decompress, verify, cache, with merged requests, read-ahead and in-flight dedup), so the
daemon does the same work for the kernel as for a fusedev reader. A blob shared by several images
is one file, served by the first image that registered it.

Served by :class:`~.fuse_session.FuseSession` (the project's own ``/dev/fuse`` session).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nydus_core.storage import ReadPipeline

from .fuse_session import FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, Attr

__all__ = ["BlobDevice", "BlobDeviceFs"]

ROOT = 1
BLOCK = 4096


@dataclass
class BlobDevice:
    """One blob's device file: the (pipeline, blob index) of every image using it (the first one
    serves reads) and its read counters."""

    name: str
    ino: int
    sources: list[tuple[ReadPipeline, int]]
    size: int
    reads: int = 0
    read_bytes: int = 0
    cached_reads: int = 0
    errors: int = 0
    opens: int = 0
    created: float = field(default_factory=time.time)
    #: (offset, size) of the first reads, in order: the access pattern by blob range
    pattern: list[tuple[int, int]] = field(default_factory=list)

    @property
    def users(self) -> int:
        """How many mounted images use this device."""
        return len(self.sources)

    def read(self, offset: int, size: int) -> bytes:
        """Return ``size`` bytes at ``offset`` (short only at the end of the file)."""
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        p, index = self.sources[0]
        n = end - offset
        data = p.read_blob_if_cached(index, offset, n)
        if data is None:
            data = p.read_blob(index, offset, n)
        else:
            self.cached_reads += 1
        if len(data) < n:  # past the layout's last chunk, inside the 4 KiB rounding
            data += bytes(n - len(data))
        self.reads += 1
        self.read_bytes += n
        if len(self.pattern) < 4096:
            self.pattern.append((offset, n))
        return data

    def metrics(self) -> dict[str, Any]:
        """Per-blob read counters (``/api/v1/metrics/blobs``)."""
        return {"blob_id": self.name, "size": self.size, "users": self.users, "opens": self.opens,
                "reads": self.reads, "read_bytes": self.read_bytes, "cached_reads": self.cached_reads,
                "errors": self.errors}


class BlobDeviceFs:
    """The handlers of the blob-device filesystem (see the module doc).

    ``direct_io`` opens the files with ``FOPEN_DIRECT_IO`` (no page cache of the device: the EROFS
    mount caches file data itself), else with ``FOPEN_KEEP_CACHE``.
    """

    def __init__(self, *, direct_io: bool = True) -> None:
        self.direct_io = direct_io
        self._lock = threading.Lock()
        self._by_name: dict[bytes, BlobDevice] = {}
        self._by_ino: dict[int, BlobDevice] = {}
        self._next_ino = ROOT + 1
        self._mtime = int(time.time())

    # -- registry -----------------------------------------------------------------------------

    def add(self, pipeline: ReadPipeline, index: int, blob_id: str) -> BlobDevice:
        """Return the device of ``blob_id`` with ``pipeline`` (blob ``index``) among its users,
        registering it when new (the first user's pipeline serves it)."""
        key = os.fsencode(blob_id)
        with self._lock:
            dev = self._by_name.get(key)
            if dev is None:
                size = -(-pipeline.blob_size(index) // BLOCK) * BLOCK
                dev = BlobDevice(blob_id, self._next_ino, [], size)
                self._next_ino += 1
                self._by_name[key] = dev
                self._by_ino[dev.ino] = dev
            dev.sources = [*dev.sources, (pipeline, index)]
            return dev

    def restore(self, name: str, ino: int, size: int, sources: list[tuple[ReadPipeline, int]]) -> BlobDevice:
        """Register a device with the inode number a previous daemon gave it (failover: the kernel
        still knows it by that number)."""
        with self._lock:
            dev = BlobDevice(name, ino, list(sources), size)
            self._by_name[os.fsencode(name)] = dev
            self._by_ino[ino] = dev
            self._next_ino = max(self._next_ino, ino + 1)
            return dev

    @property
    def next_ino(self) -> int:
        """The inode number the next new device gets."""
        return self._next_ino

    @next_ino.setter
    def next_ino(self, value: int) -> None:
        self._next_ino = value

    def remove(self, dev: BlobDevice, pipeline: ReadPipeline) -> None:
        """Drop ``pipeline`` from the users of ``dev`` (the next user serves it from now on); the
        file goes away with its last user."""
        with self._lock:
            dev.sources = [s for s in dev.sources if s[0] is not pipeline]
            if not dev.sources:
                self._by_name.pop(os.fsencode(dev.name), None)
                self._by_ino.pop(dev.ino, None)

    def devices(self) -> list[BlobDevice]:
        """Return every device file, in creation order."""
        with self._lock:
            return sorted(self._by_ino.values(), key=lambda d: d.ino)

    # -- FUSE handlers ------------------------------------------------------------------------

    def _attr(self, dev: BlobDevice) -> Attr:
        return Attr(dev.ino, stat.S_IFREG | 0o400, dev.size, 1, self._mtime)

    def _root(self) -> Attr:
        return Attr(ROOT, stat.S_IFDIR | 0o500, 0, 2, self._mtime)

    def _get(self, ino: int) -> BlobDevice:
        dev = self._by_ino.get(ino)
        if dev is None:
            raise OSError(errno.ENOENT, "no such blob device")
        return dev

    def lookup(self, parent: int, name: bytes) -> Attr:
        """Find a device file by blob id."""
        if parent != ROOT:
            raise OSError(errno.ENOTDIR, "not a directory")
        dev = self._by_name.get(name)
        if dev is None:
            raise OSError(errno.ENOENT, "no such blob device")
        return self._attr(dev)

    def getattr(self, ino: int) -> Attr:
        """Attributes of the root or a device file."""
        return self._root() if ino == ROOT else self._attr(self._get(ino))

    def open(self, ino: int, flags: int) -> tuple[int, int]:
        """Open a device file read-only."""
        if ino == ROOT:
            raise OSError(errno.EISDIR, "is a directory")
        dev = self._get(ino)
        dev.opens += 1
        return ino, FOPEN_DIRECT_IO if self.direct_io else FOPEN_KEEP_CACHE

    def read(self, ino: int, fh: int, offset: int, size: int) -> bytes:
        """Read a range of a blob's uncompressed layout (fetching what is missing)."""
        dev = self._get(ino)
        try:
            return dev.read(offset, size)
        except OSError:
            dev.errors += 1
            raise
        except Exception as exc:  # a NydusError: backend failure, digest mismatch
            dev.errors += 1
            raise OSError(errno.EIO, str(exc)) from None

    def release(self, ino: int, fh: int) -> None:
        """Nothing is kept per open file."""

    def readdir(self, ino: int) -> Sequence[tuple[bytes, Attr]]:
        """List the device files."""
        if ino != ROOT:
            raise OSError(errno.ENOTDIR, "not a directory")
        root = self._root()
        return [(b".", root), (b"..", root)] + [(os.fsencode(d.name), self._attr(d)) for d in self.devices()]

    def statfs(self) -> tuple[int, int]:
        """Total size and number of device files."""
        devs = self.devices()
        return sum(d.size for d in devs), len(devs) + 1
