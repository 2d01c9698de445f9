"""Entry point module: registers the ``blobcache`` cache policy (alias ``filecache``)."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import CachePolicy

#: The nydus-core plugin API this plugin was written for (checked when it loads).
NYDUS_PLUGIN_API = "1.0"


@hookimpl
def nydus_register_caches() -> list[type[CachePolicy]]:
    """Register ``blobcache``."""
    from .policy import BlobCachePolicy

    return [BlobCachePolicy]
