"""The zstd compressor: standard frames with the content size, level 3 as upstream."""

from __future__ import annotations

import threading

import zstandard

from nydus_core.errors import IntegrityError
from nydus_core.interfaces import Compressor


class ZstdCompressor(Compressor):
    """zstd frames, as upstream's ``zstd::bulk::compress`` (level 3) writes them."""

    name = "zstd"
    algorithm_id = 3
    super_flag = 0x80
    toc_flag = 0x2
    level = 3

    def __init__(self) -> None:
        self._local = threading.local()

    def _ctx(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = (zstandard.ZstdCompressor(level=self.level, write_content_size=True),
                   zstandard.ZstdDecompressor())
            self._local.ctx = ctx
        return ctx

    def compress(self, data: bytes) -> bytes:
        """Return one zstd frame holding ``data``."""
        return self._ctx()[0].compress(data)

    def decompress(self, data: bytes, uncompressed_size: int) -> bytes:
        """Decompress one frame, requiring exactly ``uncompressed_size`` bytes out."""
        try:
            out = self._ctx()[1].decompress(data, max_output_size=uncompressed_size)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"invalid zstd data: {exc}") from None
        if len(out) != uncompressed_size:
            raise IntegrityError(f"zstd chunk decompressed to {len(out)} bytes, expected {uncompressed_size}")
        return out
