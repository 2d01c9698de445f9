"""The ``fuse`` frontend: serve an image through a FUSE mount (what ``nydusd`` runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from nydus_core.interfaces import Frontend, ServeOptions

if TYPE_CHECKING:
    from .daemon import FuseTuning


class FuseFrontend(Frontend):
    """Mounts RAFS images with FUSE (pyfuse3 on trio), or with the kernel's EROFS driver over FUSE
    blob devices (``ServeOptions.fs_driver == "erofs"``), and serves nydusd's HTTP API.

    ``tuning`` holds this frontend's own knobs (:class:`~nydus_frontend_fuse.daemon.FuseTuning`);
    the defaults are what ``nydusd`` uses without its beyond-upstream flags.
    """

    name: ClassVar[str] = "fuse"

    def __init__(self, tuning: FuseTuning | None = None) -> None:
        self.tuning = tuning

    def serve(self, options: ServeOptions) -> int:
        """Run a daemon for ``options`` until it is stopped; return its exit status."""
        import trio

        from .daemon import Daemon

        if options.fs_driver == "erofs":
            from .erofs_daemon import ErofsDaemon

            daemon: Daemon = ErofsDaemon(options, self.tuning)
        else:
            daemon = Daemon(options, self.tuning)
        daemon.prepare()
        return trio.run(daemon.run)
