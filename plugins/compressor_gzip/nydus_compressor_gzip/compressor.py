"""The gzip compressor (upstream algorithm id 2): gzip members, and zran decoding of gzip layers."""

from __future__ import annotations

import zlib
from typing import BinaryIO

from nydus_core.errors import IntegrityError
from nydus_core.interfaces import Compressor, IndexedStream, ResumePoint

from .indexer import GzipIndexedStream
from .resume import inflate_from


class GzipCompressor(Compressor):
    """RFC 1952 gzip members; decodes from zran resume points through the system libz (ctypes)."""

    name = "gzip"
    algorithm_id = 2
    super_flag = 0x40
    toc_flag = None
    level = 6

    def compress(self, data: bytes) -> bytes:
        """Return one gzip member holding ``data``."""
        c = zlib.compressobj(self.level, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()

    def decompress(self, data: bytes, uncompressed_size: int) -> bytes:
        """Decompress one gzip member, requiring exactly ``uncompressed_size`` bytes out."""
        d = zlib.decompressobj(31)
        try:
            out = d.decompress(data, uncompressed_size + 1)
        except zlib.error as exc:
            raise IntegrityError(f"invalid gzip data: {exc}") from None
        if len(out) != uncompressed_size or not d.eof:
            raise IntegrityError(
                f"gzip chunk decompressed to {len(out)}{'+' if not d.eof else ''} bytes, "
                f"expected {uncompressed_size}"
            )
        return out

    def decompress_from(self, data: bytes, point: ResumePoint, skip: int, size: int) -> bytes:
        """Inflate from a zran resume point (primed bits, window as dictionary; see resume.py)."""
        return inflate_from(data, point, skip, size)

    def open_indexed(self, stream: BinaryIO) -> IndexedStream:
        """Read a gzip file (every member, CRC-checked) noting each deflate block boundary."""
        return GzipIndexedStream(stream)
