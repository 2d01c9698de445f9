"""Entry point module: registers the blake3 digester."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Digester


@hookimpl
def nydus_register_digesters() -> list[type[Digester]]:
    """Register ``blake3``."""
    from .digester import Blake3Digester

    return [Blake3Digester]
