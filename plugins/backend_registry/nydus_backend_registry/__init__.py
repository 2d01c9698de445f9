"""OCI distribution registry backend for nydus-py, and a registry client for converters."""

__all__ = ["RegistryBackend", "RegistryClient", "Reference", "parse_reference"]


def __getattr__(name: str):  # lazy: keep `import nydus_backend_registry` light (no requests import)
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
