"""Entry point module: registers the `s3` backend (the SDK is imported only when it is used)."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Backend

#: The nydus-core plugin API this plugin was written for (checked when it loads).
NYDUS_PLUGIN_API = "1.0"


@hookimpl
def nydus_register_backends() -> list[type[Backend]]:
    """Register ``s3``."""
    from .backend import S3Backend

    return [S3Backend]
