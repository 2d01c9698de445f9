"""``nydus containerd ...``: commands that talk to containerd (``pull``)."""

from __future__ import annotations

import click


@click.group("containerd")
def containerd() -> None:
    """Work with containerd and the Nydus snapshotter."""
