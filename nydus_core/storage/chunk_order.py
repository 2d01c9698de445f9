"""Blob-order indexes: a blob's chunks sorted by compressed or by uncompressed offset, kept compactly.

:class:`BlobChunks` holds one blob's chunk records packed (80 bytes each, in one ``bytes``) beside an
``array`` of their sort keys, so an index of a million chunks costs ~88 MB less than Python objects
would; records are decoded when looked at. Two indexes use it:

- :class:`CompressedOrder` (read-ahead): every blob's chunks by compressed offset, built once in
  the background from the image's chunk table (RAFS v6) so read-ahead can take the blob's next
  chunks whichever files they belong to.
- :class:`UncompressedLayout` (blob-range reads): one blob's chunks by uncompressed offset, built
  on the first read of that blob; ``ReadPipeline.read_blob`` walks it.

Internal to the pipeline.
"""

from __future__ import annotations

import bisect
import logging
import threading
from array import array
from collections.abc import Iterable, Iterator
from typing import Literal, Protocol, runtime_checkable

from ..rafs.image import RafsImage
from ..rafs.model import ChunkInfo

__all__ = ["BlobChunks", "ChunkTable", "CompressedOrder", "UncompressedLayout", "image_chunks"]

log = logging.getLogger("nydus_core.storage.pipeline")

_RECORD = 80
Key = Literal["compressed", "uncompressed"]


@runtime_checkable
class ChunkTable(Protocol):
    """An image with a chunk table (RAFS v6): every chunk record of the image, decoded and checked."""

    def chunk_table(self) -> list[ChunkInfo]:
        """Return the records of the bootstrap's chunk table."""
        ...


class BlobChunks:
    """One blob's chunk records sorted by a key (compressed or uncompressed offset), one per offset."""

    __slots__ = ("_records", "end", "keys")

    def __init__(self, records: bytes, keys: array[int], end: int) -> None:
        self._records = records
        #: the sort key of each record (its compressed or uncompressed offset)
        self.keys = keys
        #: where the last chunk ends (in the key's space)
        self.end = end

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> ChunkInfo:
        if not 0 <= i < len(self.keys):
            raise IndexError(i)
        return ChunkInfo.unpack_from(self._records, i * _RECORD)

    def iter_from(self, i: int, limit: int) -> Iterator[ChunkInfo]:
        """Yield up to ``limit`` records from index ``i`` on (decoded one by one, as consumed)."""
        records = self._records
        for k in range(i, min(i + limit, len(self.keys))):
            yield ChunkInfo.unpack_from(records, k * _RECORD)

    def first_at(self, key: int) -> int:
        """Return the index of the first record whose key is at or after ``key``."""
        return bisect.bisect_left(self.keys, key)

    def covering(self, offset: int) -> int:
        """Return the index of the first record that ends after uncompressed ``offset``."""
        i = bisect.bisect_right(self.keys, offset) - 1
        if i < 0:
            return 0
        c = self[i]
        return i if offset < c.uncompressed_offset + c.uncompressed_size else i + 1


def image_chunks(image: RafsImage) -> Iterable[ChunkInfo]:
    """Return every chunk record of ``image``: its chunk table (RAFS v6) when it has one, else the
    records of every regular file (repeats included)."""
    if isinstance(image, ChunkTable):
        records = image.chunk_table()
        if records:
            return records
    return _file_chunks(image)


def _file_chunks(image: RafsImage) -> Iterator[ChunkInfo]:
    for _path, ino in image.walk():
        attrs = image.getattr(ino)
        if attrs.is_reg and attrs.size:
            yield from image.chunks(ino)


def build_blob_chunks(chunks: Iterable[ChunkInfo], key: Key,
                      only_blob: int | None = None) -> dict[int, BlobChunks]:
    """Index ``chunks`` per blob by ``key`` (the first record of each offset wins)."""
    per_blob: dict[int, dict[int, ChunkInfo]] = {}
    compressed = key == "compressed"
    for c in chunks:
        if only_blob is not None and c.blob_index != only_blob:
            continue
        k = c.compressed_offset if compressed else c.uncompressed_offset
        per_blob.setdefault(c.blob_index, {}).setdefault(k, c)
    out: dict[int, BlobChunks] = {}
    for bi, by_key in per_blob.items():
        keys = sorted(by_key)
        last = by_key[keys[-1]]
        end = (last.compressed_offset + last.compressed_size if compressed
               else last.uncompressed_offset + last.uncompressed_size)
        out[bi] = BlobChunks(b"".join(by_key[k].pack() for k in keys), array("Q", keys), end)
    return out


class CompressedOrder:
    """Every blob's chunks by compressed offset, for read-ahead across files (RAFS v6 only).

    :meth:`get` returns None until the index is built; the first call starts building it on a
    background thread (when ``enabled``), :meth:`load` builds it now.
    """

    def __init__(self, image: RafsImage, *, enabled: bool) -> None:
        self._image = image
        self._enabled = enabled and isinstance(image, ChunkTable)
        self._orders: dict[int, BlobChunks] | None = None

    def get(self, blob_index: int) -> BlobChunks | None:
        """Return the blob's chunks in blob order once known, else None (starts the build)."""
        orders = self._orders
        if orders is None:
            self._orders = {}  # building (or never): nothing yet
            if self._enabled:
                threading.Thread(target=self._build, name="nydus-chunk-order", daemon=True).start()
            return None
        return orders.get(blob_index)

    def load(self) -> bool:
        """Build the index now; return whether read-ahead across files is available."""
        if not self._enabled:
            return False
        self._orders = {}
        self._build()
        return bool(self._orders)

    def _build(self) -> None:
        image = self._image
        if not isinstance(image, ChunkTable):
            return
        try:
            table = image.chunk_table()
        except Exception as exc:  # read-ahead across files is an optimisation only
            log.debug("no blob-order read-ahead: %s", exc)
            return
        self._orders = build_blob_chunks(table, "compressed")


class UncompressedLayout:
    """Each blob's chunks by uncompressed offset, built on first use per blob (thread-safe)."""

    def __init__(self, image: RafsImage) -> None:
        self._image = image
        self._layouts: dict[int, BlobChunks] = {}
        self._lock = threading.Lock()

    def get(self, blob_index: int) -> BlobChunks:
        """Return the chunks of blob ``blob_index`` in uncompressed order (IndexError if no such blob)."""
        found = self._layouts.get(blob_index)
        if found is not None:
            return found
        if not 0 <= blob_index < len(self._image.blobs):
            raise IndexError(f"blob index {blob_index} out of range: the image has "
                             f"{len(self._image.blobs)} blobs")
        with self._lock:
            found = self._layouts.get(blob_index)
            if found is None:
                built = build_blob_chunks(image_chunks(self._image), "uncompressed", blob_index)
                found = built.get(blob_index) or BlobChunks(b"", array("Q"), 0)
                self._layouts[blob_index] = found
        return found
