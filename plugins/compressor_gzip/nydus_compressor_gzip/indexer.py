"""Read a gzip file front to back as its uncompressed bytes, noting every deflate block boundary.

What a ``targz-ref`` build needs (rafs-format.md §6.8, "Building"): libz inflates with ``Z_BLOCK``
so it stops at each block boundary; there the position in the file, in the output, the unread bits
of the last input byte, that byte and the window (the last 32 KiB of the member's output) make a
:class:`~nydus_core.interfaces.ResumePoint`. Every member (bgzip, concatenated streams) is read, and
each member's CRC-32 and length are checked against its trailer.
"""

from __future__ import annotations

import ctypes
import struct
import zlib
from typing import BinaryIO

from nydus_core.errors import IntegrityError
from nydus_core.interfaces import ResumePoint

from .libz import Z_BLOCK, Z_STREAM_END, LibzError, RawInflater
from .members import TRAILER_SIZE, GzipFormatError, header_size

__all__ = ["GzipIndexedStream"]

WINDOW = 32768
_IN_STEP = 256 * 1024
_OUT_STEP = 256 * 1024


class GzipIndexedStream:
    """A gzip file read as uncompressed bytes (``read``), with its resume points and progress.

    Errors (not gzip, corrupt deflate data, CRC or length mismatch, truncated member) are
    :class:`~nydus_core.errors.IntegrityError` naming the offset and member.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._f = stream
        self._data = b""  # input not consumed yet starts at self._data[self._pos]
        self._pos = 0
        self._start = 0  # file offset of self._data[0]
        self._eof = False
        self._prev_byte = 0  # the file byte before self._data[0]
        self._inf = RawInflater()
        self._outbuf = bytearray(_OUT_STEP)
        self._outview = (ctypes.c_char * _OUT_STEP).from_buffer(self._outbuf)
        self._pending = bytearray()
        self._history = bytearray()
        self._total_out = 0
        self._member = 0
        self._member_crc = 0
        self._member_size = 0
        self._done = False
        self._points: list[ResumePoint] = []
        self._progress: list[tuple[int, int]] = []
        self._in_member = False
        self._start_member(first=True)

    # -- input ------------------------------------------------------------------------------------

    def _fill(self, need: int) -> bool:
        """Make at least ``need`` unconsumed input bytes available; False if the file ends first."""
        while len(self._data) - self._pos < need and not self._eof:
            more = self._f.read(_IN_STEP)
            if not more:
                self._eof = True
                break
            if self._pos:
                self._prev_byte = self._data[self._pos - 1]
            self._start += self._pos
            self._data = self._data[self._pos:] + more
            self._pos = 0
        return len(self._data) - self._pos >= need

    @property
    def _offset(self) -> int:
        return self._start + self._pos

    def _byte_before(self, offset: int) -> int:
        i = offset - 1 - self._start
        return self._data[i] if i >= 0 else self._prev_byte

    def _fail(self, what: str) -> IntegrityError:
        return IntegrityError(f"gzip member {self._member} (at offset {self._offset}): {what}")

    # -- members ----------------------------------------------------------------------------------

    def _start_member(self, *, first: bool = False) -> None:
        """Parse the member header at the input position (or find the end of the file)."""
        if not first:
            while True:  # zero padding after a member, as gzip(1) accepts it
                if not self._fill(1):
                    self._done = True
                    return
                if self._data[self._pos] != 0:
                    break
                self._pos += 1
        need = 10
        while True:
            have = self._fill(need)
            try:
                size = header_size(self._data, self._pos)
            except GzipFormatError as exc:
                raise self._fail(str(exc)) from None
            if size is not None:
                break
            if not have or self._eof:
                raise self._fail("the file ends inside a gzip header")
            need = len(self._data) - self._pos + 4096
        self._pos += size
        if not first:
            self._member += 1
            self._inf.reset()
        self._member_crc = 0
        self._member_size = 0
        self._history.clear()
        self._in_member = True
        self._points.append(ResumePoint(self._offset, self._total_out))

    def _end_member(self) -> None:
        if not self._fill(TRAILER_SIZE):
            raise self._fail("the file ends inside the member's trailer (truncated gzip)")
        crc, isize = struct.unpack_from("<II", self._data, self._pos)
        if crc != self._member_crc:
            raise self._fail(f"CRC-32 mismatch (trailer {crc:#010x}, data {self._member_crc:#010x})")
        if isize != self._member_size & 0xFFFF_FFFF:
            raise self._fail(f"length mismatch (trailer {isize}, data {self._member_size})")
        self._pos += TRAILER_SIZE
        self._in_member = False
        self._start_member()

    # -- inflating --------------------------------------------------------------------------------

    def _step(self) -> None:
        """Inflate up to one block boundary or one output buffer."""
        if self._pos >= len(self._data) and not self._fill(1):
            raise self._fail("the file ends inside compressed data (truncated gzip)")
        inf = self._inf
        inf.feed(self._data, self._pos)
        before = inf.avail_in
        try:
            rc, n = inf.inflate(self._outview, 0, _OUT_STEP, Z_BLOCK)
        except LibzError as exc:
            raise self._fail(str(exc)) from None
        self._pos += before - inf.avail_in
        if n:
            piece = self._outbuf[:n]
            self._pending += piece
            self._member_crc = zlib.crc32(piece, self._member_crc)
            self._member_size += n
            self._total_out += n
            hist = self._history
            hist += piece
            if len(hist) > 2 * WINDOW:
                del hist[:-WINDOW]
        self._progress.append((self._total_out, self._offset))
        if rc == Z_STREAM_END:
            self._end_member()
            return
        dt = inf.data_type
        if dt & 0x80 and not dt & 0x40:
            bits = dt & 7
            offset = self._offset
            self._points.append(ResumePoint(
                offset, self._total_out, bits, self._byte_before(offset) if bits else 0,
                bytes(self._history[-WINDOW:]),
            ))
        elif n == 0 and before == inf.avail_in and not self._fill(len(self._data) - self._pos + 1):
            raise self._fail("the file ends inside compressed data (truncated gzip)")

    # -- the IndexedStream protocol ---------------------------------------------------------------

    def read(self, n: int = -1, /) -> bytes:
        """Return up to ``n`` uncompressed bytes (all the rest when negative); short only at the end."""
        while not self._done and (n < 0 or len(self._pending) < n):
            self._step()
        if n < 0 or n >= len(self._pending):
            out = bytes(self._pending)
            self._pending.clear()
        else:
            out = bytes(self._pending[:n])
            del self._pending[:n]
        return out

    def take_points(self) -> list[ResumePoint]:
        """Return the resume points passed since the last call."""
        points, self._points = self._points, []
        return points

    def take_progress(self) -> list[tuple[int, int]]:
        """Return ``(uncompressed, compressed)`` counts after each inflate step since the last call."""
        progress, self._progress = self._progress, []
        return progress

    @property
    def compressed_size(self) -> int:
        """Bytes of the file consumed so far (all of it once :meth:`read` returned short)."""
        return self._offset

    def close(self) -> None:
        """Free the inflate stream."""
        del self._outview
        self._inf.close()
