"""zstd chunk compression for nydus-py."""

from .compressor import ZstdCompressor

__all__ = ["ZstdCompressor"]
