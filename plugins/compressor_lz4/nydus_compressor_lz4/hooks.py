"""Entry point module: registers the lz4_block compressor."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Compressor

#: The nydus-core plugin API this plugin was written for (checked when it loads).
NYDUS_PLUGIN_API = "1.0"


@hookimpl
def nydus_register_compressors() -> list[type[Compressor]]:
    """Register ``lz4_block``."""
    from .compressor import Lz4BlockCompressor

    return [Lz4BlockCompressor]
