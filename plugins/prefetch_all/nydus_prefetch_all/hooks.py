"""Entry point module: registers the ``all`` prefetcher."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Prefetcher

#: The nydus-core plugin API this plugin was written for (checked when it loads).
NYDUS_PLUGIN_API = "1.0"


@hookimpl
def nydus_register_prefetchers() -> list[type[Prefetcher]]:
    """Register ``all``."""
    from .prefetcher import AllPrefetcher

    return [AllPrefetcher]
