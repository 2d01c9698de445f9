"""Entry point module: registers the ``oci`` converter and the ``nydus convert`` command.

Nothing heavy is imported here, so ``nydus --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nydus_core import hookimpl

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
