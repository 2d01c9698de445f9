"""Entry point module: registers the lz4_block compressor."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Compressor


@hookimpl
def nydus_register_compressors() -> list[type[Compressor]]:
    """Register ``lz4_block``."""
    from .compressor import Lz4BlockCompressor

    return [Lz4BlockCompressor]
