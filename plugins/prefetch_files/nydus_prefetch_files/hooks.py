"""Entry point module: registers the ``files`` prefetcher."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Prefetcher


@hookimpl
def nydus_register_prefetchers() -> list[type[Prefetcher]]:
    """Register ``files``."""
    from .prefetcher import FilesPrefetcher

    return [FilesPrefetcher]
