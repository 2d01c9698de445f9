"""Entry point module: registers the ``registry`` backend (requests is imported lazily)."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Backend


@hookimpl
def nydus_register_backends() -> list[type[Backend]]:
    """Register ``registry``."""
    from .backend import RegistryBackend

    return [RegistryBackend]
