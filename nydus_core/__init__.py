"""nydus-py core: hook specs, plugin manager, RAFS format, read pipeline and builder."""

from .hookspecs import hookimpl
from .pluginapi import PLUGIN_API_VERSION

__version__ = "0.1.0"

__all__ = ["PLUGIN_API_VERSION", "__version__", "hookimpl"]
