"""Entry point module: registers the gzip compressor."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Compressor

#: The nydus-core plugin API this plugin was written for (checked when it loads).
NYDUS_PLUGIN_API = "1.0"


@hookimpl
def nydus_register_compressors() -> list[type[Compressor]]:
    """Register ``gzip``."""
    from .compressor import GzipCompressor

    return [GzipCompressor]
