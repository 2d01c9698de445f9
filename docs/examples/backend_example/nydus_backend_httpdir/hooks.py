"""Entry point module. Keep it light: import the implementation inside the hook."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Backend


@hookimpl
def nydus_register_backends() -> list[type[Backend]]:
    """Register the ``httpdir`` backend."""
    from .backend import HttpDirBackend

    return [HttpDirBackend]
