"""gzip chunk compression and zran (OCI-ref) decoding of gzip layers for nydus-py."""

from .compressor import GzipCompressor

__all__ = ["GzipCompressor"]
