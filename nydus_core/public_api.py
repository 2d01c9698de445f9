"""Which modules of ``nydus_core`` are its public API: what plugins may import (docs/core-api.md).

A public module lists its public names in ``__all__``; everything else in it is underscore-named.
Modules not listed here (the read pipeline's collaborators, the format readers and writers, the
builder's stages, the commands) are internal: plugins reach them only through the public modules.
``tests/test_public_api.py`` walks every plugin's source and fails on an import or an attribute use
outside this API.
"""

from __future__ import annotations

__all__ = ["PUBLIC_MODULES", "is_public_module"]

#: The public modules, in the order docs/core-api.md presents them.
PUBLIC_MODULES: tuple[str, ...] = (
    # the plugin contract
    "nydus_core",
    "nydus_core.hookspecs",
    "nydus_core.interfaces",
    "nydus_core.errors",
    "nydus_core.plugins",
    "nydus_core.pluginapi",
    "nydus_core.public_api",
    # configuration
    "nydus_core.config",
    "nydus_core.config.model",
    "nydus_core.config.fields",
    # the format
    "nydus_core.rafs",
    "nydus_core.rafs.image",
    "nydus_core.rafs.model",
    "nydus_core.rafs.constants",
    # reading
    "nydus_core.fs",
    "nydus_core.imageref",
    "nydus_core.mounts",
    "nydus_core.storage",
    "nydus_core.storage.prefetch",
    "nydus_core.storage.stats",
    "nydus_core.storage.pool",
    "nydus_core.storage.access_pattern",
    "nydus_core.storage.blobids",
    # building and checking
    "nydus_core.builder",
    "nydus_core.tools",
    "nydus_core.tools.check",
    "nydus_core.gzipstream",
    # OCI
    "nydus_core.oci",
    "nydus_core.oci.annotations",
    "nydus_core.oci.image",
    "nydus_core.oci.mediatypes",
    "nydus_core.oci.platform",
    # helpers for backends
    "nydus_core.remote_backend",
    "nydus_core.object_store",
    # helpers for commands
    "nydus_core.cli.runner",
    "nydus_core.cli.convention",
    "nydus_core.cli.progress",
    "nydus_core.logsetup",
    "nydus_core.redact",
    "nydus_core.sizes",
)


def is_public_module(name: str) -> bool:
    """Return whether plugins may import module ``name``."""
    return name in PUBLIC_MODULES
