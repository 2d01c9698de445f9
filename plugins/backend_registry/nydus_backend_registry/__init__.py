"""OCI distribution registry backend for nydus-py, and a registry client for converters."""

from typing import TYPE_CHECKING

__all__ = ["RegistryBackend", "RegistryClient", "Reference", "parse_reference"]

if TYPE_CHECKING:  # what __getattr__ returns, for type checkers
    from .backend import RegistryBackend
    from .client import RegistryClient
    from .reference import Reference, parse_reference


def __getattr__(name: str) -> object:  # lazy: keep `import nydus_backend_registry` light (no requests import)
    if name == "RegistryBackend":
        from .backend import RegistryBackend

        return RegistryBackend
    if name == "RegistryClient":
        from .client import RegistryClient

        return RegistryClient
    if name in ("Reference", "parse_reference"):
        from . import reference

        return getattr(reference, name)
    raise AttributeError(name)
