"""gzip member framing (RFC 1952): the header before each deflate stream, the trailer after it."""

from __future__ import annotations

import struct

__all__ = ["GZIP_MAGIC", "TRAILER_SIZE", "GzipFormatError", "header_size"]

GZIP_MAGIC = b"\x1f\x8b\x08"
TRAILER_SIZE = 8
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 0x02, 0x04, 0x08, 0x10


class GzipFormatError(Exception):
    """The bytes are not a gzip member header."""


def header_size(data: bytes, pos: int) -> int | None:
    """Return the size of the gzip member header at ``data[pos:]``; None when ``data`` ends inside it.

    Raises :class:`GzipFormatError` when the bytes are not a gzip (deflate) member header.
    """
    if len(data) - pos < 10:
        if data[pos:pos + 3] != GZIP_MAGIC[:len(data) - pos]:
            raise GzipFormatError("not a gzip member (bad magic)")
        return None
    if data[pos:pos + 3] != GZIP_MAGIC:
        raise GzipFormatError("not a gzip member (bad magic)")
    flags = data[pos + 3]
    if flags & 0xE0:
        raise GzipFormatError(f"gzip header has reserved flag bits set ({flags:#x})")
    p = pos + 10
    if flags & _FEXTRA:
        if len(data) < p + 2:
            return None
        p += 2 + struct.unpack_from("<H", data, p)[0]
    for flag in (_FNAME, _FCOMMENT):
        if flags & flag:
            end = data.find(b"\0", p)
            if end < 0:
                return None
            p = end + 1
    if flags & _FHCRC:
        p += 2
    if p > len(data):
        return None
    return p - pos
