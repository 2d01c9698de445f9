"""Entry point module. Keep it light: import the implementation inside the hook."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Backend

#: The nydus-core plugin API this plugin was written for (checked when it loads).
NYDUS_PLUGIN_API = "1.0"


@hookimpl
def nydus_register_backends() -> list[type[Backend]]:
    """Register the ``httpdir`` backend."""
    from .backend import HttpDirBackend

    return [HttpDirBackend]
