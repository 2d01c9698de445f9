"""Blob-order indexes: a blob's chunks sorted by compressed or by uncompressed offset, kept compactly.

:class:`BlobChunks` holds one blob's sort keys in an ``array`` and, for a RAFS v6 image, the
positions of the records in the bootstrap's chunk table (read through its mmap when looked at: 8 to
12 bytes a chunk in all; nothing when the table is already in blob order and holds one blob); for
an image without a chunk table the records are packed (80 bytes each, in one ``bytes``). Nothing is
a Python object per chunk. Two indexes use it:

- :class:`CompressedOrder` (read-ahead): every blob's chunks by compressed offset, built once in
  the background from the image's chunk table (RAFS v6) so read-ahead can take the blob's next
  chunks whichever files they belong to.
- :class:`UncompressedLayout` (blob-range reads): one blob's chunks by uncompressed offset, built
  on the first read of that blob; ``ReadPipeline.read_blob`` walks it.

Internal to the pipeline.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, Protocol, runtime_checkable

from ..rafs.image import RafsImage
from ..rafs.model import ChunkInfo

__all__ = ["BlobChunks", "ChunkTable", "CompressedOrder", "UncompressedLayout", "blob_chunks"]

log = logging.getLogger("nydus_core.storage.pipeline")

_RECORD = 80
Key = Literal["compressed", "uncompressed"]


@runtime_checkable
class ChunkTable(Protocol):
    """An image with a chunk table (RAFS v6), its records decoded and checked one at a time."""

    def chunk_table_len(self) -> int:
        """Return the number of records in the chunk table."""
        ...

    def chunk_table_record(self, pos: int) -> ChunkInfo:
        """Return record ``pos`` of the chunk table, decoded and checked."""
        ...


class BlobChunks:
    """One blob's chunk records sorted by a key (compressed or uncompressed offset), one per offset."""

    __slots__ = ("_decode", "_pos", "end", "keys")

    def __init__(self, decode: Callable[[int], ChunkInfo], pos: array[int] | None, keys: array[int],
                 end: int) -> None:
        self._decode = decode
        self._pos = pos  # record number of each entry (None: the entry's own index)
        #: the sort key of each record (its compressed or uncompressed offset)
        self.keys = keys
        #: where the last chunk ends (in the key's space)
        self.end = end

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> ChunkInfo:
        if not 0 <= i < len(self.keys):
            raise IndexError(i)
        return self._decode(i if self._pos is None else self._pos[i])

    def iter_from(self, i: int, limit: int) -> Iterator[ChunkInfo]:
        """Yield up to ``limit`` records from index ``i`` on (decoded one by one, as consumed)."""
        decode, pos = self._decode, self._pos
        for k in range(i, min(i + limit, len(self.keys))):
            yield decode(k if pos is None else pos[k])

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


def _sorted_unique(keys: array[int], pos: array[int]) -> tuple[array[int], array[int]]:
    """Sort ``keys`` (stably, carrying ``pos``) and keep the first entry of each key."""
    if not all(a < b for a, b in zip(keys, itertools.islice(keys, 1, None))):
        order = sorted(range(len(keys)), key=keys.__getitem__)
        k2, p2, last = array("Q"), array("I"), -1
        for i in order:
            if keys[i] != last:
                last = keys[i]
                k2.append(last)
                p2.append(pos[i])
        keys, pos = k2, p2
    return keys, pos


def _end(c: ChunkInfo, compressed: bool) -> int:
    if compressed:
        return c.compressed_offset + c.compressed_size
    return c.uncompressed_offset + c.uncompressed_size


def table_blob_chunks(image: ChunkTable, key: Key, only_blob: int | None = None) -> dict[int, BlobChunks]:
    """Index the records of ``image``'s chunk table per blob by ``key``, keeping only their
    positions (every record is decoded and checked once, one at a time)."""
    compressed = key == "compressed"
    per_blob: dict[int, tuple[array[int], array[int]]] = {}
    record = image.chunk_table_record
    for p in range(image.chunk_table_len()):
        c = record(p)
        if only_blob is not None and c.blob_index != only_blob:
            continue
        entry = per_blob.get(c.blob_index)
        if entry is None:
            entry = per_blob[c.blob_index] = (array("Q"), array("I"))
        entry[0].append(c.compressed_offset if compressed else c.uncompressed_offset)
        entry[1].append(p)
    out: dict[int, BlobChunks] = {}
    for bi, (keys, pos) in per_blob.items():
        keys, pos = _sorted_unique(keys, pos)
        identity = pos[0] == 0 and pos[-1] == len(pos) - 1 and all(
            a + 1 == b for a, b in zip(pos, itertools.islice(pos, 1, None)))
        out[bi] = BlobChunks(record, None if identity else pos, keys, _end(record(pos[-1]), compressed))
    return out


def _file_chunks(image: RafsImage) -> Iterator[ChunkInfo]:
    for _path, ino in image.walk():
        attrs = image.getattr(ino)
        if attrs.is_reg and attrs.size:
            yield from image.chunks(ino)


def build_blob_chunks(chunks: Iterable[ChunkInfo], key: Key,
                      only_blob: int | None = None) -> dict[int, BlobChunks]:
    """Index ``chunks`` per blob by ``key``, records packed (the first record of each offset wins)."""
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
        records = b"".join(by_key[k].pack() for k in keys)

        def decode(p: int, records: bytes = records) -> ChunkInfo:
            return ChunkInfo.unpack_from(records, p * _RECORD)

        out[bi] = BlobChunks(decode, None, array("Q", keys), _end(by_key[keys[-1]], compressed))
    return out


def blob_chunks(image: RafsImage, key: Key, only_blob: int | None = None) -> dict[int, BlobChunks]:
    """Index every chunk of ``image`` per blob by ``key``: from its chunk table (RAFS v6) when it has
    one, else from the records of every regular file."""
    if isinstance(image, ChunkTable) and image.chunk_table_len():
        return table_blob_chunks(image, key, only_blob)
    return build_blob_chunks(_file_chunks(image), key, only_blob)


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
            orders = table_blob_chunks(image, "compressed")
        except Exception as exc:  # read-ahead across files is an optimisation only
            log.debug("no blob-order read-ahead: %s", exc)
            return
        self._orders = orders


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
                built = blob_chunks(self._image, "uncompressed", blob_index)
                found = built.get(blob_index) or BlobChunks(_no_record, None, array("Q"), 0)
                self._layouts[blob_index] = found
        return found


def _no_record(pos: int) -> ChunkInfo:
    raise IndexError(pos)
