"""The snapshotter's nydusd processes: one shared daemon, or one dedicated daemon per image.

``daemon_mode = "shared"``: one nydusd FUSE-mounted at ``<root>/mnt``; each image is a RAFS instance
attached with ``POST /api/v1/mount?mountpoint=/<id>`` and seen at ``<root>/mnt/<id>``. One process,
one FUSE connection, images mount in milliseconds; a crash takes every image with it.

``fs_driver = "erofs"``: the daemons mount images with the kernel's EROFS driver over their blob
devices (the image's mount is then an ``erofs`` mount, the lowest ``lowerdir`` of its containers'
overlays); an image that cannot be served that way (RAFS v5, no file-backed EROFS in the kernel,
not root) is served with fusedev and the log says why.

``daemon_mode = "dedicated"`` (upstream's default, alias ``multiple``): one nydusd per image,
started with ``--bootstrap`` and ``--config <root>/config/<id>/config.json`` and mounted at
``<root>/snapshots/<id>/mnt``, its API on ``<root>/socket/<id>/api.sock``, its log in
``<root>/logs/<id>/nydusd.log``. It starts with the image's first active or view snapshot and exits
with the last, so one image's daemon cannot take other images' containers down.

Daemons run in their own session: stopping or restarting the snapshotter leaves running containers'
lower dirs in place, and on start the snapshotter reconnects through the API sockets.
"""

from __future__ import annotations

import json
import logging
import os
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


def erofs_refusal(bootstrap: Path) -> str | None:
    """Why nydusd's ``erofs`` driver cannot serve ``bootstrap`` on this host, or None."""
    from nydus_core.rafs.image import open_image

    try:
        with open_image(bootstrap) as image:
            version = image.version
    except (OSError, NydusError) as exc:
        return f"cannot read {bootstrap}: {exc}"
    if version != 6:
        return f"RAFS v{version} is not EROFS"
    if os.geteuid() != 0:
        return "not root (mounting EROFS needs CAP_SYS_ADMIN)"
    release = os.uname().release.split("-")[0].split(".")
    try:
        if (int(release[0]), int(release[1])) < (6, 12):
            return f"kernel {os.uname().release} has no file-backed EROFS mounts (6.12+)"
    except (IndexError, ValueError):
        pass
    try:
        with open("/proc/filesystems") as fh:
            if not any(line.split()[-1:] == ["erofs"] for line in fh):
                subprocess.run(["modprobe", "erofs"], capture_output=True, check=False)
                with open("/proc/filesystems") as again:
                    if not any(line.split()[-1:] == ["erofs"] for line in again):
                        return "no EROFS in this kernel"
    except OSError:
        return "cannot read /proc/filesystems"
    return None


class NydusdManager:
    """Start, reconnect to and drive one nydusd (by default the shared one at ``<root>/mnt``).

    With ``bootstrap`` and ``config_path`` the daemon serves that one image at its mountpoint (a
    dedicated daemon); without, it starts empty and takes images through ``/api/v1/mount``."""

    def __init__(self, root: Path, command: str = "", *, extra_args: list[str] | None = None,
                 daemon_id: str = "containerd-nydus", mountpoint: Path | None = None,
                 apisock: Path | None = None, log_path: Path | None = None, pid_path: Path | None = None,
                 bootstrap: Path | None = None, config_path: Path | None = None,
                 fs_driver: str = "fusedev", supervisor: str | None = None) -> None:
        self.root = root
        self.fs_driver = fs_driver
        #: the failover supervisor socket (erofs daemons only: fusedev ones are restarted instead)
        self.supervisor = supervisor
        self.extra_args = list(extra_args or [])
        self.daemon_id = daemon_id
        self.mountpoint = mountpoint or root / "mnt"
        self.apisock = apisock or root / "nydusd.sock"
        self.log_path = log_path or root / "nydusd.log"
        self.pid_path = pid_path or root / "nydusd.pid"
        self.bootstrap = bootstrap
        self.config_path = config_path
        self.command = command or str(Path(sys.executable).with_name("nydusd"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    def _api(self) -> Any:
        """The client of the daemon's API socket (one keep-alive pool, shared by the gRPC threads)."""
        if self._client is None:
            from nydus_frontend_fuse.ctl import ApiClient

            self._client = ApiClient(str(self.apisock), timeout=60)
        return self._client

    def api_call(self, method: str, path: str, query: dict[str, str] | None = None, body: Any = None) -> Any:
        """One request to this daemon's API (NydusError when it fails)."""
        return self._api().call(method, path, query, body)

    def alive(self) -> bool:
        """Whether a daemon answers on the API socket."""
        if not self.apisock.exists():
            return False
        try:
            info = self._api().call("GET", "/api/v1/daemon")
        except NydusError:
            return False
        return isinstance(info, dict) and info.get("state") == "RUNNING"

    def _record_pid(self, pid: int) -> None:
        """Write the pid file atomically (a reader never sees it empty or half written)."""
        tmp = self.pid_path.with_name(self.pid_path.name + ".tmp")
        tmp.write_text(str(pid))
        os.replace(tmp, self.pid_path)

    def pid(self) -> int | None:
        """The daemon's process id as recorded when it was started (None if unknown)."""
        try:
            return int(self.pid_path.read_text())
        except (OSError, ValueError):
            return None

    def dead(self) -> bool:
        """Whether the daemon this snapshotter started (or found recorded) has died since."""
        if self._proc is not None:
            return self._proc.poll() is not None
        pid = self.pid()
        if pid is None:
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        return state in ("Z", "X")

    def ensure_running(self, timeout: float = 30.0) -> bool:
        """Reconnect to a running daemon or start one; return True when a new one was started."""
        if self.alive() and is_mountpoint(self.mountpoint):
            return False
        self.close()
        if self._proc is not None:
            self._proc.poll()  # reap a daemon of ours that died
        # First detach a dead daemon's mount: it answers ENOTCONN to everything, mkdir's stat included
        # (once the kernel's cached attributes of its root have expired).
        force_unmount(self.mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.apisock.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.apisock.unlink(missing_ok=True)
        argv = self._argv()
        log.info("starting nydusd: %s", " ".join(argv))
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise NydusdError(f"{self.command}: cannot start nydusd: {exc}") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if is_mountpoint(self.mountpoint) and self.alive():
                self._record_pid(proc.pid)
                self._proc = proc
                return True
            if proc.poll() is not None:
                raise NydusdError(f"nydusd exited with {proc.returncode} ({self._last_log_line()}); "
                                  f"see {self.log_path}")
            time.sleep(0.05)
        proc.terminate()
        raise NydusdError(f"nydusd did not come up in {timeout:.0f}s; see {self.log_path}")

    def _argv(self, apisock: Path | None = None) -> list[str]:
        sup = self.supervisor if self.fs_driver == "erofs" else None
        options = ServeOptions(mountpoint=str(self.mountpoint), apisock=str(apisock or self.apisock),
                               daemon_id=self.daemon_id, fs_driver=self.fs_driver, supervisor=sup,
                               bootstrap=str(self.bootstrap) if self.bootstrap else None)
        argv = [self.command, *options.nydusd_args(), "--log-file", str(self.log_path), *self.extra_args]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        return argv

    def can_fail_over(self) -> bool:
        """Whether a dead daemon of this manager can be replaced without unmounting (erofs driver
        with a supervisor)."""
        return self.fs_driver == "erofs" and bool(self.supervisor)

    def take_over(self, timeout: float = 30.0) -> None:
        """Start ``nydusd --upgrade`` with the same flags on a side API socket, have it take the FUSE
        connection the supervisor holds (``PUT /api/v1/daemon/fuse/takeover``, which ends a daemon
        still serving it) and start it, then move its socket to :attr:`apisock`. Failover of a dead
        daemon and live upgrade alike: the mounts stay; until the takeover succeeds a live old daemon
        keeps serving and keeps its API socket."""
        self.close()
        if self._proc is not None:
            self._proc.poll()
        side = self.apisock.with_name(self.apisock.name + ".upgrade")
        side.unlink(missing_ok=True)
        argv = [*self._argv(side), "--upgrade"]
        log.info("taking over: %s", " ".join(argv))
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise NydusdError(f"{self.command}: cannot start nydusd: {exc}") from None
        from nydus_frontend_fuse.ctl import ApiClient

        client = ApiClient(str(side), timeout=60)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise NydusdError(f"nydusd --upgrade exited with {proc.returncode} "
                                      f"({self._last_log_line()})")
                if side.exists():
                    try:
                        if client.call("GET", "/api/v1/daemon").get("state") == "INIT":
                            break
                    except NydusError:
                        pass
                if time.monotonic() > deadline:
                    raise NydusdError(f"nydusd --upgrade did not come up in {timeout:.0f}s")
                time.sleep(0.05)
            try:
                client.call("PUT", "/api/v1/daemon/fuse/takeover")
                client.call("PUT", "/api/v1/daemon/start")
            except NydusError as exc:
                raise NydusdError(f"takeover failed: {exc}") from None
            os.replace(side, self.apisock)  # the listening socket follows its inode
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            side.unlink(missing_ok=True)
            raise
        finally:
            client.close()
        self._record_pid(proc.pid)
        self._proc = proc

    def resend_state(self) -> None:
        """Ask a running erofs daemon to send its descriptor and state again (after the supervisor
        restarted, upstream's way of getting them back)."""
        if self.can_fail_over() and self.alive():
            try:
                self._api().call("PUT", "/api/v1/daemon/fuse/sendfd")
            except NydusError as exc:
                log.warning("nydusd %s: sendfd: %s", self.daemon_id, exc)

    def _last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1][-300:] if lines else "empty log"

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
        self.pid_path.unlink(missing_ok=True)
        self.apisock.unlink(missing_ok=True)
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        self.close()

    def close(self) -> None:
        """Close the API connections (the daemon keeps running)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


class SharedDaemons:
    """``daemon_mode = "shared"``: every image in the one nydusd at ``<root>/mnt``.

    With ``fs_driver = "erofs"`` that daemon mounts images with the kernel's EROFS driver; an image
    it cannot serve that way (RAFS v5, or a host without file-backed EROFS) goes to a second, fusedev
    daemon at ``<root>/mnt-fusedev``, started when first needed, with a log line saying why."""

    mode = "shared"

    def __init__(self, root: Path, command: str = "", extra_args: list[str] | None = None,
                 fs_driver: str = "fusedev", supervisor: str | None = None) -> None:
        self.daemon = NydusdManager(root, command, extra_args=extra_args, fs_driver=fs_driver,
                                    supervisor=supervisor)
        self.fallback: NydusdManager | None = None
        if fs_driver != "fusedev":
            self.fallback = NydusdManager(root, command, extra_args=extra_args,
                                          daemon_id="containerd-nydus-fusedev",
                                          mountpoint=root / "mnt-fusedev",
                                          apisock=root / "nydusd-fusedev.sock",
                                          log_path=root / "nydusd-fusedev.log",
                                          pid_path=root / "nydusd-fusedev.pid")

    def start(self) -> str:
        """Reconnect to or start the daemon; say which (NydusdError when it cannot start)."""
        started = self.daemon.ensure_running()
        return f"{'started' if started else 'reconnected to'} nydusd at {self.daemon.apisock}"

    def _for(self, name: str, bootstrap: Path) -> NydusdManager:
        if self.fallback is None:
            return self.daemon
        why = erofs_refusal(bootstrap)
        if why is None:
            return self.daemon
        log.info("image %s: served with fusedev instead of %s: %s", name, self.daemon.fs_driver, why)
        return self.fallback

    def mount(self, name: str, bootstrap: Path, config: dict[str, Any]) -> Path:
        """Attach the image and return where it is visible."""
        return self._for(name, bootstrap).mount(name, bootstrap, config)

    def umount(self, name: str) -> bool:
        """Detach the image (its last container is gone); return whether it was attached."""
        done = self.daemon.umount(name)
        if self.fallback is not None and self.fallback.alive():
            done = self.fallback.umount(name) or done
        return done

    def set_command(self, command: str) -> None:
        """Start daemons from ``command`` from now on (after a live upgrade)."""
        self.daemon.command = command
        if self.fallback is not None:
            self.fallback.command = command

    def daemons(self) -> dict[str, NydusdManager]:
        """Every daemon by id."""
        out = {self.daemon.daemon_id: self.daemon}
        if self.fallback is not None and self.fallback.alive():
            out[self.fallback.daemon_id] = self.fallback
        return out

    def daemon_of(self, name: str) -> NydusdManager | None:
        """The daemon serving image ``name``."""
        if self.fallback is not None and self.fallback.alive() and f"/{name}" in self.fallback.mounts():
            return self.fallback
        return self.daemon

    def stop(self) -> None:
        """Stop every daemon (unmounting everything)."""
        self.daemon.stop()
        if self.fallback is not None:
            self.fallback.stop()

    def close(self) -> None:
        """Close API connections; the daemons keep running."""
        self.daemon.close()
        if self.fallback is not None:
            self.fallback.close()


class DedicatedDaemons:
    """``daemon_mode = "dedicated"``: one nydusd per image, started and stopped with its snapshots."""

    mode = "dedicated"

    def __init__(self, root: Path, command: str = "", extra_args: list[str] | None = None,
                 fs_driver: str = "fusedev", supervisor: str | None = None) -> None:
        self.root = root
        self.fs_driver = fs_driver
        self.supervisor = supervisor
        self.command = command
        self.extra_args = list(extra_args or [])
        self._daemons: dict[str, NydusdManager] = {}

    def _manager(self, name: str) -> NydusdManager:
        d = self._daemons.get(name)
        if d is None:
            r = self.root
            d = NydusdManager(r, self.command, extra_args=self.extra_args, daemon_id=name,
                              mountpoint=r / "snapshots" / name / "mnt",
                              apisock=r / "socket" / name / "api.sock",
                              log_path=r / "logs" / name / "nydusd.log",
                              pid_path=r / "socket" / name / "nydusd.pid",
                              bootstrap=r / "snapshots" / name / "image.boot",
                              config_path=r / "config" / name / "config.json",
                              fs_driver=self.fs_driver, supervisor=self.supervisor)
            self._daemons[name] = d
        return d

    def start(self) -> str:
        """Nothing to start: daemons come with their images' snapshots."""
        running = [n for n in self._known() if self._manager(n).alive()]
        return f"{len(running)} dedicated nydusd running"

    def _known(self) -> list[str]:
        sockets = self.root / "socket"
        return sorted(p.name for p in sockets.iterdir()) if sockets.is_dir() else []

    def mount(self, name: str, bootstrap: Path, config: dict[str, Any]) -> Path:
        """Start (or reconnect to) the image's own nydusd and return its mountpoint."""
        d = self._manager(name)
        assert d.config_path is not None
        if not (d.alive() and is_mountpoint(d.mountpoint)):
            d.config_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(d.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold auth
            with os.fdopen(fd, "w") as fh:
                json.dump(config, fh)
            d.bootstrap = bootstrap
            d.fs_driver = self.fs_driver
            if self.fs_driver == "erofs":
                why = erofs_refusal(bootstrap)
                if why is not None:
                    log.info("image %s: served with fusedev instead of erofs: %s", name, why)
                    d.fs_driver = "fusedev"
            d.ensure_running()
        return d.mountpoint

    def umount(self, name: str) -> bool:
        """Stop the image's nydusd and drop its socket and config; return whether one ran."""
        d = self._daemons.pop(name, None) or self._manager_if_known(name)
        if d is None:
            return False
        was = d.alive() or is_mountpoint(d.mountpoint)
        d.stop()
        for p in (d.apisock.parent, d.config_path.parent if d.config_path else None):
            if p is not None and p.is_dir():
                for f in p.iterdir():
                    f.unlink(missing_ok=True)
                p.rmdir()
        self._daemons.pop(name, None)
        return was

    def _manager_if_known(self, name: str) -> NydusdManager | None:
        return self._manager(name) if name in self._known() else None

    def set_command(self, command: str) -> None:
        """Start daemons from ``command`` from now on (after a live upgrade)."""
        self.command = command
        for d in self._daemons.values():
            d.command = command

    def daemons(self) -> dict[str, NydusdManager]:
        """Every daemon by id (image name), including ones started before this process."""
        for n in self._known():
            self._manager(n)
        return dict(self._daemons)

    def daemon_of(self, name: str) -> NydusdManager | None:
        """The daemon serving image ``name``, if any."""
        return self._manager_if_known(name) or self._daemons.get(name)

    def stop(self) -> None:
        """Stop every daemon."""
        for name in list(self.daemons()):
            self.umount(name)

    def close(self) -> None:
        """Close API connections; the daemons keep running."""
        for d in self._daemons.values():
            d.close()


Daemons = SharedDaemons | DedicatedDaemons


def make_daemons(mode: str, root: Path, command: str = "", extra_args: list[str] | None = None,
                 fs_driver: str = "fusedev", supervisor: str | None = None) -> Daemons:
    """The daemon pool of ``daemon_mode`` (``shared`` or ``dedicated``) serving with ``fs_driver``;
    with ``supervisor`` (recover policy failover) erofs daemons hand their FUSE descriptor there."""
    if mode == "shared":
        return SharedDaemons(root, command, extra_args, fs_driver, supervisor)
    return DedicatedDaemons(root, command, extra_args, fs_driver, supervisor)


def stop_all(root: Path) -> None:
    """Stop every nydusd a snapshotter at ``root`` started, in either mode (tests, ``cleanup_on_close``)."""
    SharedDaemons(root, fs_driver="erofs").stop()  # the fusedev fallback daemon too
    DedicatedDaemons(root).stop()
