"""Decode part of a gzip stream from a zran resume point (rafs-format.md §6.8, "Decoding chunk i").

Raw inflate is primed with the unread bits of the byte before the point and given the point's
window as dictionary; when a member's deflate stream ends, its trailer and the next member's header
are skipped and inflation goes on with no history. All inflation is libz's.
"""

from __future__ import annotations

import ctypes

from nydus_core.errors import IntegrityError
from nydus_core.interfaces import ResumePoint

from .libz import Z_STREAM_END, LibzError, RawInflater
from .members import TRAILER_SIZE, GzipFormatError, header_size

__all__ = ["inflate_from"]


def inflate_from(data: bytes, point: ResumePoint, skip: int, size: int) -> bytes:
    """Return output bytes ``[skip, skip + size)`` counted from ``point``; ``data`` starts at
    ``point.in_offset`` of the gzip file. IntegrityError when the data does not decode that far."""
    want = skip + size
    if size <= 0:
        return b""
    data = bytes(data)
    out = bytearray(want)
    view = (ctypes.c_char * want).from_buffer(out)
    got = 0
    try:
        with RawInflater() as inf:
            if point.bits:
                inf.prime(point.bits, point.byte >> (8 - point.bits))
            inf.set_dictionary(point.window)
            base = 0
            inf.feed(data, 0)
            while got < want:
                rc, n = inf.inflate(view, got, want - got)
                got += n
                if got >= want:
                    break
                pos = len(data) - inf.avail_in
                if rc == Z_STREAM_END:
                    base = _next_member(data, pos + TRAILER_SIZE, point)
                    inf.reset()
                    inf.feed(data, base)
                    continue
                if n == 0 and inf.avail_in == 0:
                    raise IntegrityError(
                        f"gzip data from offset {point.in_offset} ends after {len(data)} bytes, "
                        f"{want - got} bytes short of the wanted output"
                    )
    except LibzError as exc:
        raise IntegrityError(f"gzip data from offset {point.in_offset}: {exc}") from None
    finally:
        del view
    return bytes(out[skip:]) if skip else bytes(out)


def _next_member(data: bytes, pos: int, point: ResumePoint) -> int:
    """Return the offset in ``data`` of the next member's deflate stream (after its header)."""
    while pos < len(data) and data[pos] == 0:  # zero padding between members, as gzip(1) allows
        pos += 1
    try:
        hsize = header_size(data, pos) if pos < len(data) else None
    except GzipFormatError as exc:
        raise IntegrityError(f"gzip data at offset {point.in_offset + pos}: {exc}") from None
    if hsize is None:
        raise IntegrityError(
            f"gzip data from offset {point.in_offset} ends at member end, before the wanted output"
        )
    return pos + hsize
