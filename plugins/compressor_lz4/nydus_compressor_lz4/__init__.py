"""lz4_block chunk compression for nydus-py."""

from .compressor import Lz4BlockCompressor

__all__ = ["Lz4BlockCompressor"]
