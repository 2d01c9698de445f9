"""Entry point module: registers the ``all`` prefetcher."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Prefetcher


@hookimpl
def nydus_register_prefetchers() -> list[type[Prefetcher]]:
    """Register ``all``."""
    from .prefetcher import AllPrefetcher

    return [AllPrefetcher]
