"""The lz4_block compressor: raw LZ4 blocks without a size prefix (upstream ``lz4_block``)."""

from __future__ import annotations

import lz4.block

from nydus_core.errors import IntegrityError
from nydus_core.interfaces import Compressor


class Lz4BlockCompressor(Compressor):
    """Raw LZ4 block format, as ``LZ4_compress_default``/``LZ4_decompress_safe``."""

    name = "lz4_block"
    algorithm_id = 1
    super_flag = 0x2
    toc_flag = 0x4

    def compress(self, data: bytes) -> bytes:
        """Return ``data`` as one raw LZ4 block (no size prefix)."""
        block: bytes = lz4.block.compress(data, mode="default", store_size=False)  # lz4 has no types
        return block

    def decompress(self, data: bytes, uncompressed_size: int) -> bytes:
        """Decompress one raw block whose original size is ``uncompressed_size``."""
        try:
            out: bytes = lz4.block.decompress(data, uncompressed_size=uncompressed_size)
        except lz4.block.LZ4BlockError as exc:
            raise IntegrityError(f"invalid lz4_block data: {exc}") from None
        if len(out) != uncompressed_size:
            raise IntegrityError(f"lz4 chunk decompressed to {len(out)} bytes, expected {uncompressed_size}")
        return out
