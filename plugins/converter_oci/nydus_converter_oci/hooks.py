"""Entry point module: registers the ``oci`` converter and the ``nydus convert`` command.

Nothing heavy is imported here, so ``nydus --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nydus_core import hookimpl

#: The nydus-core plugin API this plugin was written for (checked when it loads).
NYDUS_PLUGIN_API = "1.0"


if TYPE_CHECKING:
    import click

    from nydus_core.interfaces import Converter


@hookimpl
def nydus_register_converters() -> list[type[Converter]]:
    """Register the ``oci`` converter."""
    from .converter import OciConverter

    return [OciConverter]


@hookimpl
def nydus_register_commands(cli: click.Group) -> None:
    """Add ``nydus convert`` (``nydusify convert``)."""
    from .cli import convert_cmd

    cli.add_command(convert_cmd, "convert")


@hookimpl
def nydus_resolve_image(reference: str) -> tuple[str, dict[str, Any]] | None:
    """Resolve a registry reference to its cached bootstrap and a registry-backend nydusd config."""
    from nydus_backend_registry.reference import parse_reference

    if "/" not in reference or reference.startswith((".", "/", "~")):
        return None  # a (missing) file path, not a registry reference: let the caller say so
    try:
        parse_reference(reference)
    except Exception:
        return None  # not a reference this plugin understands: let others (or the caller) answer
    from .imageref import resolve_image_reference

    image = resolve_image_reference(reference)
    return str(image.bootstrap), image.config
