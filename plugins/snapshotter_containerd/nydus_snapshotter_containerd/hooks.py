"""Entry point module: adds ``nydus containerd`` (``pull``). Nothing heavy (grpc) is imported here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nydus_core import hookimpl

#: The nydus-core plugin API this plugin was written for (checked when it loads).
NYDUS_PLUGIN_API = "1.0"


if TYPE_CHECKING:
    import click


@hookimpl
def nydus_register_commands(cli: click.Group) -> None:
    """Add the ``nydus containerd`` group."""
    from .commands import containerd

    cli.add_command(containerd)
