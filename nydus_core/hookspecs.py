"""Every hook a nydus plugin can implement. Hooks live here and nowhere else.

A plugin is a module named by an entry point in the ``nydus`` group; it implements hooks with
``@nydus_core.hookimpl``. Each ``nydus_register_*`` hook returns a class or a list of classes; the
core keys them by their ``name`` attribute. Two providers of one name is an error naming both.
"""

# Hook specs are signatures and docs only; pluggy never runs their bodies, so an empty body is by design.
# mypy: disable-error-code="empty-body"

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .interfaces import (
        Backend,
        CachePolicy,
        Compressor,
        Converter,
        Digester,
        Frontend,
        Prefetcher,
    )

__all__ = [
    "PROJECT",
    "hookimpl",
    "hookspec",
    "nydus_register_backends",
    "nydus_register_caches",
    "nydus_register_commands",
    "nydus_register_compressors",
    "nydus_register_converters",
    "nydus_register_digesters",
    "nydus_register_frontends",
    "nydus_register_prefetchers",
    "nydus_resolve_image",
]

PROJECT = "nydus"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def nydus_register_backends() -> type[Backend] | list[type[Backend]]:
    """Return the :class:`~nydus_core.interfaces.Backend` classes this plugin provides.

    Their ``name`` is the ``device.backend.type`` users write in a nydusd config (``s3``, ``registry``).
    """


@hookspec
def nydus_register_compressors() -> type[Compressor] | list[type[Compressor]]:
    """Return the :class:`~nydus_core.interfaces.Compressor` classes this plugin provides.

    Their ``name`` is the ``--compressor`` value (``zstd``, ``lz4_block``); their ``algorithm_id`` and
    ``super_flag`` are the ids upstream records in images.
    """


@hookspec
def nydus_register_digesters() -> type[Digester] | list[type[Digester]]:
    """Return the :class:`~nydus_core.interfaces.Digester` classes this plugin provides.

    Their ``name`` is the ``--digester`` value (``blake3``, ``sha256``).
    """


@hookspec
def nydus_register_caches() -> type[CachePolicy] | list[type[CachePolicy]]:
    """Return the :class:`~nydus_core.interfaces.CachePolicy` classes this plugin provides.

    Their ``name`` (and ``aliases``) are the ``device.cache.type`` users write (``blobcache``).
    """


@hookspec
def nydus_register_prefetchers() -> type[Prefetcher] | list[type[Prefetcher]]:
    """Return the :class:`~nydus_core.interfaces.Prefetcher` classes this plugin provides."""


@hookspec
def nydus_register_frontends() -> type[Frontend] | list[type[Frontend]]:
    """Return the :class:`~nydus_core.interfaces.Frontend` classes this plugin provides (``fuse``)."""


@hookspec
def nydus_register_converters() -> type[Converter] | list[type[Converter]]:
    """Return the :class:`~nydus_core.interfaces.Converter` classes this plugin provides (``oci``)."""


@hookspec
def nydus_resolve_image(reference: str) -> tuple[str, dict[str, Any]] | None:
    """Resolve an image reference (``host[:port]/repo[:tag|@digest]``) to a local bootstrap.

    Return ``(bootstrap_path, nydusd_config)`` — the config (a v1 dict) names a backend that reads the
    image's blobs — or ``None`` when this plugin does not handle ``reference``. Two plugins answering
    for one reference is an error naming both. ``nydus ls|cat|mount`` call it for an argument that is
    not an existing file.
    """


@hookspec
def nydus_register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``nydus`` command group ``cli``.

    Import heavy modules inside the command functions, not at module level, so ``nydus --help``
    stays fast.
    """
