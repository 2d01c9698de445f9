"""The ``fuse`` frontend: serve an image through a FUSE mount (what ``nydusd`` runs)."""

from __future__ import annotations

from typing import Any, ClassVar

from nydus_core.interfaces import Frontend


class FuseFrontend(Frontend):
    """Mounts RAFS images with FUSE (pyfuse3 on trio) and serves nydusd's HTTP API."""

    name: ClassVar[str] = "fuse"

    def serve(self, **options: Any) -> int:
        """Run a daemon until it is stopped.

        ``options`` are the fields of :class:`~nydus_frontend_fuse.daemon.DaemonSettings`
        (``mountpoint`` required; ``bootstrap``, ``config`` (a NydusConfig), ``apisock``...)."""
        import trio

        from .daemon import Daemon, DaemonSettings

        daemon = Daemon(DaemonSettings(**options))
        daemon.prepare()
        return trio.run(daemon.run)
