"""nydusify for nydus-py: OCI image -> Nydus image conversion, check and mount (a converter plugin)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nydus-converter-oci")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
