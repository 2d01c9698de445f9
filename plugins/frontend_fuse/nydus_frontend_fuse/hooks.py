"""Entry point module: registers the ``fuse`` frontend and the ``nydus mount`` command.

Nothing heavy is imported here (pyfuse3 and trio load only when a mount starts), so ``nydus --help``
stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nydus_core import hookimpl

#: The nydus-core plugin API this plugin was written for (checked when it loads).
NYDUS_PLUGIN_API = "1.0"


if TYPE_CHECKING:
    import click

    from nydus_core.interfaces import Frontend


@hookimpl
def nydus_register_frontends() -> list[type[Frontend]]:
    """Register the ``fuse`` frontend."""
    from .frontend import FuseFrontend

    return [FuseFrontend]


@hookimpl
def nydus_register_commands(cli: click.Group) -> None:
    """Add ``nydus mount BOOTSTRAP MOUNTPOINT --config CFG``."""
    from .mount_cmd import mount

    cli.add_command(mount)
