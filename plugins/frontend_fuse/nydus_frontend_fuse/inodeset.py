"""A compact set of inode numbers: a growable bitmap (inode numbers of one image are dense), with a
plain set for the rare number too large to index."""

from __future__ import annotations

_BITMAP_LIMIT = 1 << 27  # 16 MiB of bitmap at most


class InodeSet:
    """``add``/``discard``/``in`` over non-negative ints, one bit each below ``_BITMAP_LIMIT``."""

    __slots__ = ("_big", "_bits")

    def __init__(self) -> None:
        self._bits = bytearray()
        self._big: set[int] = set()

    def add(self, ino: int) -> None:
        """Add ``ino``."""
        if ino >= _BITMAP_LIMIT:
            self._big.add(ino)
            return
        i = ino >> 3
        bits = self._bits
        if i >= len(bits):
            bits.extend(bytes(max(i + 1 - len(bits), len(bits))))
        bits[i] |= 1 << (ino & 7)

    def discard(self, ino: int) -> None:
        """Remove ``ino`` if present."""
        if ino >= _BITMAP_LIMIT:
            self._big.discard(ino)
            return
        i = ino >> 3
        if i < len(self._bits):
            self._bits[i] &= ~(1 << (ino & 7)) & 0xFF

    def __contains__(self, ino: object) -> bool:
        if not isinstance(ino, int) or ino < 0:
            return False
        if ino >= _BITMAP_LIMIT:
            return ino in self._big
        i = ino >> 3
        return i < len(self._bits) and bool(self._bits[i] & (1 << (ino & 7)))

    def __len__(self) -> int:
        return sum(bin(b).count("1") for b in self._bits) + len(self._big)
