"""nydus-py core: hook specs, plugin manager, RAFS format, read pipeline and builder."""

from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
