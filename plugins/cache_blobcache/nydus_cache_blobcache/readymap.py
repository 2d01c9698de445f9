"""Which chunks of one cached blob are ready, in a few bytes per chunk.

:class:`ReadyMap` keeps, per chunk index of the blob, the chunk's uncompressed offset, size and
digest prefix in flat arrays (20 bytes a chunk, allocated once for the blob's chunk count; upstream
keeps a bitmap per blob), instead of a dict entry and three Python objects per ready chunk (~150
bytes). An entry vouches for a chunk only when offset, size and digest prefix all match.

Chunk indexes are not always usable: pre-2022 RAFS v5 images record 0 for every chunk, a blob may
not say how many chunks it has, and journals written before the index was recorded do not carry
it. Such chunks go to a small dict keyed by uncompressed offset (always unique within a blob), as
before; an entry found there under a usable index moves into the arrays.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

__all__ = ["TAG_SIZE", "ReadyMap"]

TAG_SIZE = 8


def _tag(block_id: bytes) -> bytes:
    """The digest prefix as stored: ``TAG_SIZE`` bytes, zero-padded."""
    tag = block_id[:TAG_SIZE]
    return tag if len(tag) == TAG_SIZE else tag.ljust(TAG_SIZE, b"\0")


class ReadyMap:
    """Ready chunks of one blob: ``(offset, size, tag)`` by chunk index, plus an overflow dict."""

    __slots__ = ("_count", "_offsets", "_overflow", "_sizes", "_tags", "_used")

    def __init__(self, chunk_count: int) -> None:
        self._reset(max(0, chunk_count))

    def _reset(self, n: int) -> None:
        """Make ``n`` empty index slots and no overflow."""
        self._count = n
        self._offsets = array("Q", bytes(8 * n))
        self._sizes = array("I", bytes(4 * n))  # 0: slot empty
        self._tags = bytearray(TAG_SIZE * n)
        self._used = 0
        #: chunks without a usable index: offset -> (size, tag)
        self._overflow: dict[int, tuple[int, bytes]] = {}

    @property
    def chunk_count(self) -> int:
        """The number of index slots."""
        return self._count

    def __len__(self) -> int:
        return self._used + len(self._overflow)

    def _slot(self, index: int, size: int) -> bool:
        return 0 <= index < self._count and 0 < size < 1 << 32

    def matches(self, offset: int, size: int, block_id: bytes, index: int) -> bool:
        """Return whether the chunk at ``offset`` (``size`` bytes, digest ``block_id``, chunk
        ``index`` or -1) is ready."""
        tag = _tag(block_id)
        if (0 <= index < self._count and self._sizes[index] == size and self._offsets[index] == offset
                and self._tags[index * TAG_SIZE:(index + 1) * TAG_SIZE] == tag):
            return True
        if self._overflow:
            r = self._overflow.get(offset)
            if r is not None and r[0] == size and r[1] == tag:
                if self._slot(index, size) and not self._sizes[index]:
                    del self._overflow[offset]  # an entry without its index: file it under it
                    self._put_slot(index, offset, size, r[1])
                return True
        return False

    def get(self, offset: int, index: int = -1) -> tuple[int, bytes] | None:
        """Return ``(size, tag)`` of the ready chunk at ``offset`` (found by ``index`` when known)."""
        if 0 <= index < self._count and self._sizes[index] and self._offsets[index] == offset:
            return self._sizes[index], bytes(self._tags[index * TAG_SIZE:(index + 1) * TAG_SIZE])
        return self._overflow.get(offset)

    def __iter__(self) -> Iterator[int]:
        """Yield the offsets of the ready chunks."""
        for off, _size, _tag, _index in self.entries():
            yield off

    def _put_slot(self, index: int, offset: int, size: int, tag: bytes) -> None:
        if not self._sizes[index]:
            self._used += 1
        self._offsets[index] = offset
        self._sizes[index] = size
        self._tags[index * TAG_SIZE:(index + 1) * TAG_SIZE] = _tag(tag)

    def add(self, offset: int, size: int, tag: bytes, index: int = -1) -> None:
        """Mark the chunk at ``offset`` ready (replacing what was recorded at that offset)."""
        if self._slot(index, size) and (not self._sizes[index] or self._offsets[index] == offset):
            self._overflow.pop(offset, None)
            self._put_slot(index, offset, size, tag)
        else:
            self._overflow[offset] = (size, _tag(tag))

    def pop(self, offset: int, index: int = -1) -> tuple[int, bytes] | None:
        """Unmark the chunk at ``offset``; return its ``(size, tag)`` if it was ready."""
        r = self._overflow.pop(offset, None)
        if r is not None:
            return r
        if not (0 <= index < self._count and self._sizes[index] and self._offsets[index] == offset):
            index = self._find(offset)
            if index < 0:
                return None
        size = self._sizes[index]
        tag = bytes(self._tags[index * TAG_SIZE:(index + 1) * TAG_SIZE])
        self._sizes[index] = 0
        self._used -= 1
        return size, tag

    def _find(self, offset: int) -> int:
        for i, (off, size) in enumerate(zip(self._offsets, self._sizes, strict=True)):
            if size and off == offset:
                return i
        return -1

    def entries(self) -> Iterator[tuple[int, int, bytes, int]]:
        """Yield ``(offset, size, tag, index)`` of every ready chunk (index -1 when unknown)."""
        sizes, offsets, tags = self._sizes, self._offsets, self._tags
        for i in range(self._count):
            if sizes[i]:
                yield offsets[i], sizes[i], bytes(tags[i * TAG_SIZE:(i + 1) * TAG_SIZE]), i
        for off, (size, tag) in list(self._overflow.items()):
            yield off, size, tag, -1

    def items(self) -> Iterator[tuple[int, tuple[int, bytes]]]:
        """Yield ``(offset, (size, tag))`` of every ready chunk (the shape of the former dict)."""
        for off, size, tag, _index in self.entries():
            yield off, (size, tag)

    def total_size(self) -> int:
        """Return the summed sizes of the ready chunks."""
        return sum(self._sizes) + sum(size for size, _ in self._overflow.values())

    def clear(self) -> None:
        """Forget everything."""
        self._reset(self._count)
