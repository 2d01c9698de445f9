"""``daemon.recover_policy``: watch the nydusd processes and bring a dead one back.

``restart`` (upstream's default): a thread checks every daemon's process twice a second; when one
has died it calls back into the snapshotter, which starts a new daemon (the stale FUSE mount is
detached first) and mounts again every image that active or view snapshots use. As upstream, the old
FUSE session is lost: a running container whose overlay stands on it keeps getting errors
("Transport endpoint is not connected") until it is restarted; new containers, and new Mounts of
existing snapshots, get the new daemon. ``none``: nothing is watched (a later Mounts or Prepare of a
snapshot on that image still starts a daemon). ``failover`` (erofs driver): the same thread finds the
dead daemon and the snapshotter hands its FUSE connection to ``nydusd --upgrade`` instead
(:mod:`nydus_frontend_fuse.failover`); nothing is unmounted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .nydusd import Daemons

log = logging.getLogger("containerd-nydus")


class DaemonSupervisor:
    """A daemon thread calling ``recover(ids)`` when daemons of ``daemons`` have died."""

    def __init__(self, daemons: Daemons, recover: Callable[[list[str]], None], interval: float = 0.5) -> None:
        self.daemons = daemons
        self.recover = recover
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching."""
        self._thread = threading.Thread(target=self._run, name="nydusd-supervisor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                dead = [i for i, d in self.daemons.daemons().items() if d.dead()]
                if dead:
                    self.recover(dead)
            except Exception:  # the watcher must survive anything one round hits
                log.exception("nydusd supervisor")

    def stop(self) -> None:
        """Stop watching (the daemons keep running)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
