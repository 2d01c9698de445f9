"""nydusd for nydus-py: serve RAFS images through FUSE (pyfuse3 on trio), with upstream's HTTP API
and ``nydusctl``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nydus-frontend-fuse")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
