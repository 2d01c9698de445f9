"""Entry point module: registers the blake3 digester."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Digester

#: The nydus-core plugin API this plugin was written for (checked when it loads).
NYDUS_PLUGIN_API = "1.0"


@hookimpl
def nydus_register_digesters() -> list[type[Digester]]:
    """Register ``blake3``."""
    from .digester import Blake3Digester

    return [Blake3Digester]
