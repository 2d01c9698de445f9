"""Entry point module: registers the localfs backend."""

from __future__ import annotations

from nydus_core import hookimpl
from nydus_core.interfaces import Backend


@hookimpl
def nydus_register_backends() -> list[type[Backend]]:
    """Register ``localfs``."""
    from .backend import LocalFsBackend

    return [LocalFsBackend]
