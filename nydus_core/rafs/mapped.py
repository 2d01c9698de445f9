"""A read-only, bounds-checked view of a bootstrap: an ``mmap`` of the file, or bytes in memory.

Both RAFS readers decode straight from this buffer with ``struct.unpack_from``; every offset and
length read from disk goes through :meth:`MappedBootstrap.check` before it is used, so a hostile or
truncated file gives a one-line :class:`~nydus_core.errors.FormatError` naming the file.
"""

from __future__ import annotations

import itertools
import mmap
import os

from ..errors import FormatError


class MappedBootstrap:
    """The bytes of one bootstrap file (mapped read-only) plus the name used in error messages."""

    __slots__ = ("_mmap", "buf", "path", "size")

    def __init__(self, path: str, data: bytes | None = None) -> None:
        self.path = path
        self._mmap: mmap.mmap | None = None
        if data is not None:
            self.buf: bytes | mmap.mmap = bytes(data)
        else:
            try:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size == 0:
                        self.buf = b""
                    else:
                        self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                        self.buf = self._mmap
            except FileNotFoundError:
                raise FormatError(f"{path}: bootstrap file not found") from None
            except IsADirectoryError:
                raise FormatError(f"{path}: is a directory, not a bootstrap") from None
            except OSError as exc:
                raise FormatError(f"{path}: cannot read bootstrap: {exc.strerror or exc}") from None
        self.size = len(self.buf)

    def error(self, message: str) -> FormatError:
        """Return a FormatError ``"PATH: message"`` (the caller raises it)."""
        return FormatError(f"{self.path}: {message}")

    def check(self, offset: int, length: int, what: str, *args: object) -> None:
        """Raise FormatError unless ``[offset, offset + length)`` lies inside the file.

        ``what`` names the region; with ``args`` it is a ``str.format`` template, formatted only on
        failure (this runs on every inode access).
        """
        if offset < 0 or length < 0 or offset + length > self.size:
            name = what.format(*args) if args else what
            raise self.error(
                f"{name} at offset {offset} (length {length}) lies outside the file ({self.size} bytes)"
            )

    def close(self) -> None:
        """Unmap the file (idempotent)."""
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None


def check_disjoint(m: MappedBootstrap, regions: list[tuple[str, int, int]]) -> None:
    """Raise FormatError if two non-empty ``(name, offset, length)`` regions overlap."""
    live = sorted((off, off + length, name) for name, off, length in regions if length > 0)
    for (_s1, e1, n1), (s2, _e2, n2) in itertools.pairwise(live):
        if s2 < e1:
            raise m.error(f"{n1} and {n2} overlap")


def align8(n: int) -> int:
    """Round ``n`` up to a multiple of 8."""
    return (n + 7) & ~7


def check_name(m: MappedBootstrap, name: bytes, where: str) -> bytes:
    """Return ``name`` if it is a usable directory entry name, else raise FormatError."""
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise m.error(f"{where}: invalid file name {name!r}")
    return name
