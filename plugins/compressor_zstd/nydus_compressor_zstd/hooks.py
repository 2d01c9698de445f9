"""Entry point module: registers the zstd compressor."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Compressor


@hookimpl
def nydus_register_compressors() -> list[type[Compressor]]:
    """Register ``zstd``."""
    from .compressor import ZstdCompressor

    return [ZstdCompressor]
