"""Regular files as the read pipeline sees them: size and chunk records, found by offset.

:class:`FileChunks` holds one file's size and chunk records (in file order) with a fast
offset -> chunk lookup; :class:`FileIndex` decodes them from the bootstrap once per inode and keeps
the most recent ones (a bounded LRU), so a file's records are not decoded again on every read.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Sequence

from ..rafs.image import RafsImage
from ..rafs.model import ChunkInfo

__all__ = ["FileChunks", "FileIndex"]

#: Files whose chunk records are kept decoded.
DEFAULT_ENTRIES = 1 << 10


class FileChunks:
    """A regular file's ``size`` and ``chunks`` (records in file order, ``file_offset`` set)."""

    __slots__ = ("_offsets", "chunks", "size")

    def __init__(self, size: int, chunks: Sequence[ChunkInfo], chunk_size: int) -> None:
        self.size = size
        self.chunks = chunks
        n = len(chunks)
        dense = n == 0 or (
            chunks[0].file_offset == 0
            and chunks[-1].file_offset == (n - 1) * chunk_size
            and n == -(-size // chunk_size)
        )
        self._offsets: list[int] | None = None if dense else [c.file_offset for c in chunks]

    def index_of(self, offset: int, chunk_size: int) -> int:
        """Return the index of the first chunk that ends after ``offset``."""
        offsets = self._offsets
        if offsets is None:
            return offset // chunk_size
        i = bisect.bisect_right(offsets, offset) - 1
        if i < 0:
            return 0
        c = self.chunks[i]
        return i if offset < c.file_offset + c.uncompressed_size else i + 1


class FileIndex:
    """Inode -> :class:`FileChunks`, decoded once and kept for the ``max_entries`` latest files."""

    def __init__(self, image: RafsImage, max_entries: int = DEFAULT_ENTRIES) -> None:
        self._image = image
        self._chunk_size = image.chunk_size
        self._max = max(1, max_entries)
        self._files: OrderedDict[int, FileChunks] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ino: int) -> FileChunks:
        """Return the size and chunks of regular file ``ino`` (IsADirectoryError, OSError otherwise)."""
        f = self._files.get(ino)
        if f is not None:
            return f
        attrs = self._image.getattr(ino)
        if attrs.is_dir:
            raise IsADirectoryError(f"inode {ino} is a directory")
        if not attrs.is_reg:
            raise OSError(f"inode {ino} is not a regular file")
        f = FileChunks(attrs.size, self._image.chunks(ino) if attrs.size else [], self._chunk_size)
        with self._lock:
            self._files[ino] = f
            if len(self._files) > self._max:
                self._files.popitem(last=False)
        return f
