"""The one shared nydusd of a snapshotter, driven through its ``/api/v1/mount`` API.

Choice: one daemon per snapshotter (not one per image). It is a single FUSE mount at
``<root>/mnt``; each image is a RAFS instance under ``<root>/mnt/<bootstrap snapshot id>``. One
process means one FUSE connection and one API socket to manage, and images mount in milliseconds;
the cost is that a daemon crash takes every image with it (the snapshotter starts a new daemon and
remounts on its next start or mount request). The daemon runs in its own session, so stopping or
restarting the snapshotter leaves running containers' lower dirs in place; on start the snapshotter
reconnects to it through the socket.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nydus_core.errors import NydusError
from nydus_core.interfaces import ServeOptions
from nydus_core.mounts import force_unmount, is_mountpoint

log = logging.getLogger("containerd-nydus")


class NydusdError(NydusError):
    """nydusd could not be started or refused a request."""


class NydusdManager:
    """Start, reconnect to and drive the shared nydusd."""

    def __init__(self, root: Path, command: str = "", *, extra_args: list[str] | None = None) -> None:
        self.root = root
        self.extra_args = list(extra_args or [])
        self.mountpoint = root / "mnt"
        self.apisock = root / "nydusd.sock"
        self.log_path = root / "nydusd.log"
        self.command = command or str(Path(sys.executable).with_name("nydusd"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    def _api(self) -> Any:
        """The client of the daemon's API socket (one keep-alive pool, shared by the gRPC threads)."""
        if self._client is None:
            from nydus_frontend_fuse.ctl import ApiClient

            self._client = ApiClient(str(self.apisock), timeout=60)
        return self._client

    def alive(self) -> bool:
        """Whether a daemon answers on the API socket."""
        if not self.apisock.exists():
            return False
        try:
            info = self._api().call("GET", "/api/v1/daemon")
        except NydusError:
            return False
        return isinstance(info, dict) and info.get("state") == "RUNNING"

    def ensure_running(self, timeout: float = 30.0) -> bool:
        """Reconnect to a running daemon or start one; return True when a new one was started."""
        if self.alive():
            return False
        if self._proc is not None:
            self._proc.poll()  # reap a daemon of ours that died
        # First detach a dead daemon's mount: it answers ENOTCONN to everything, mkdir's stat included
        # (once the kernel's cached attributes of its root have expired).
        force_unmount(self.mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.apisock.unlink(missing_ok=True)
        options = ServeOptions(mountpoint=str(self.mountpoint), apisock=str(self.apisock),
                               daemon_id="containerd-nydus")
        argv = [self.command, *options.nydusd_args(), "--log-file", str(self.log_path), *self.extra_args]
        log.info("starting nydusd: %s", " ".join(argv))
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise NydusdError(f"{self.command}: cannot start nydusd: {exc}") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if is_mountpoint(self.mountpoint) and self.alive():
                (self.root / "nydusd.pid").write_text(str(proc.pid))
                self._proc = proc
                return True
            if proc.poll() is not None:
                raise NydusdError(f"nydusd exited with {proc.returncode}; see {self.log_path}")
            time.sleep(0.05)
        proc.terminate()
        raise NydusdError(f"nydusd did not come up in {timeout:.0f}s; see {self.log_path}")

    def mounts(self) -> set[str]:
        """Sub-paths (``/<id>``) the daemon serves now."""
        info = self._api().call("GET", "/api/v1/daemon")
        return set((info or {}).get("backend_collection") or {})

    def path_of(self, name: str) -> Path:
        """Where the image ``name`` is visible."""
        return self.mountpoint / name

    def mount(self, name: str, bootstrap: Path, config: dict[str, Any]) -> Path:
        """Mount ``bootstrap`` at ``/<name>`` unless it is mounted already; return its path."""
        self.ensure_running()
        sub = f"/{name}"
        if sub in self.mounts():
            return self.path_of(name)
        body = {"source": str(bootstrap), "fs_type": "rafs", "config": json.dumps(config)}
        try:
            self._api().call("POST", "/api/v1/mount", {"mountpoint": sub}, body)
        except NydusError as exc:
            raise NydusdError(f"mounting {bootstrap}: {exc}") from None
        return self.path_of(name)

    def umount(self, name: str) -> bool:
        """Unmount ``/<name>`` if mounted; return whether it was."""
        if not self.alive():
            return False
        sub = f"/{name}"
        if sub not in self.mounts():
            return False
        self._api().call("DELETE", "/api/v1/mount", {"mountpoint": sub})
        return True

    def stop(self) -> None:
        """Ask the daemon to exit and wait until its mount is gone."""
        if self.alive():
            try:
                self._api().call("PUT", "/api/v1/daemon/exit")
            except NydusError:
                pass
            deadline = time.monotonic() + 10
            while is_mountpoint(self.mountpoint) and time.monotonic() < deadline:
                time.sleep(0.05)
        force_unmount(self.mountpoint)
        (self.root / "nydusd.pid").unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        """Close the API connections (the daemon keeps running)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
