"""Upstream's system controller: HTTP on a unix socket (``[system]`` ``enable``/``address``/``uid``/``gid``).

Routes, as upstream nydus-snapshotter answers them (``curl --unix-socket SOCK http://x/api/v1/daemons``):

- ``GET /api/v1/daemons``: every nydusd of this snapshotter: ``id``, ``pid``, ``api_socket``,
  ``supervisor_path``, ``reference`` (images it serves), ``mountpoint``, ``startup_cpu_utilization``
  (not measured: 0), ``memory_rss_kb`` (from ``/proc``), ``read_data_kb`` (the daemon's
  ``data_read``), ``instances`` (by snapshot id: ``snapshot_id``, ``snapshot_dir``, ``mountpoint``,
  ``image_id``); ours besides: ``fs_driver``, ``state``.
- ``GET /api/v1/daemons/records``: what the snapshotter keeps on disk about each daemon (pid file,
  sockets, config, log), readable while a daemon is down (upstream answers 501 here).
- ``PUT /api/v1/daemons/upgrade`` with ``{"nydusd_path": P, "version": V, "policy": "rolling"}``:
  live upgrade, one daemon after the other: ``P --upgrade`` takes each daemon's FUSE connection over
  from the supervisor (``erofs`` driver with ``recover_policy = "failover"``; a ``fusedev`` session
  cannot be handed over, so such a pool is refused with 501 and nothing is changed); later daemons
  start from ``P`` too. ``version``, when given, must appear in ``P --version``.

Errors are upstream's JSON ``{"code": "Unknown", "message": ...}``. The socket is 0600 (owner
``uid``/``gid``); a socket another live process answers on is left alone (logged), never stolen.
Served by the standard library's threading socket server: a handful of operator requests need no more.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import subprocess
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nydus_core.errors import NydusError, describe

from . import labels as L
from .snapshotter import UpgradeRefused

if TYPE_CHECKING:
    from .nydusd import NydusdManager
    from .snapshotter import Snapshotter

log = logging.getLogger("containerd-nydus")

#: largest request body read (an upgrade request is a few hundred bytes)
MAX_BODY = 64 << 10


class ControllerError(Exception):
    """A request the controller answers with an HTTP error status."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _rss_kb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


class SystemController:
    """The HTTP API over one :class:`.Snapshotter` (see the module doc)."""

    def __init__(self, sn: Snapshotter, path: Path, *, uid: int = 0, gid: int = 0) -> None:
        self.sn = sn
        self.path = path
        self.uid, self.gid = uid, gid
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None

    # -- answers --------------------------------------------------------------------------------

    def _instances(self, d: NydusdManager) -> dict[str, dict[str, str]]:
        by_name = {self.sn.image_name(s): s for s in self.sn.meta.all()
                   if s.labels.get(L.NYDUS_BOOTSTRAP) == "true"}
        if self.sn.daemons.mode == "dedicated":
            names = [d.daemon_id] if d.daemon_id in by_name else []
        else:
            try:
                served = sorted(d.mounts()) if d.alive() else []
            except NydusError:
                served = []
            names = [m.lstrip("/") for m in served if m.lstrip("/") in by_name]
        out: dict[str, dict[str, str]] = {}
        for name in names:
            boot = by_name[name]
            mp = d.mountpoint if self.sn.daemons.mode == "dedicated" else d.mountpoint / name
            image = boot.labels.get(L.NYDUS_IMAGE) or boot.labels.get(L.IMAGE_REF, "")
            out[str(boot.id)] = {"snapshot_id": str(boot.id), "mountpoint": str(mp), "image_id": image,
                                 "snapshot_dir": str(self.sn.snapshot_dir(boot.id))}
        return out

    def describe_daemons(self) -> list[dict[str, Any]]:
        """``GET /api/v1/daemons``."""
        out = []
        for d in self.sn.daemons.daemons().values():
            alive = d.alive()
            read_kb = 0.0
            if alive:
                try:
                    metrics = d.api_call("GET", "/api/v1/metrics")
                    read_kb = float(metrics.get("data_read", 0)) / 1024 if isinstance(metrics, dict) else 0.0
                except NydusError as exc:
                    log.warning("nydusd %s: metrics: %s", d.daemon_id, exc)
            instances = self._instances(d)
            pid = d.pid()
            out.append({"id": d.daemon_id, "pid": pid or 0, "api_socket": str(d.apisock),
                        "supervisor_path": d.supervisor or "", "reference": len(instances),
                        "mountpoint": str(d.mountpoint), "startup_cpu_utilization": 0.0,
                        "memory_rss_kb": _rss_kb(pid) if alive else 0.0, "read_data_kb": read_kb,
                        "instances": instances, "fs_driver": d.fs_driver,
                        "state": "RUNNING" if alive else "DEAD"})
        return out

    def daemon_records(self) -> list[dict[str, Any]]:
        """``GET /api/v1/daemons/records``: the on-disk state of each daemon, without asking it."""
        return [{"id": d.daemon_id, "pid": d.pid() or 0, "pid_file": str(d.pid_path),
                 "api_socket": str(d.apisock), "api_socket_exists": d.apisock.exists(),
                 "mountpoint": str(d.mountpoint), "fs_driver": d.fs_driver,
                 "supervisor_path": d.supervisor or "", "log_file": str(d.log_path),
                 "config_file": str(d.config_path) if d.config_path else "",
                 "bootstrap": str(d.bootstrap) if d.bootstrap else ""}
                for d in self.sn.daemons.daemons().values()]

    def upgrade(self, body: Any) -> list[dict[str, Any]]:
        """``PUT /api/v1/daemons/upgrade``: live-upgrade every daemon to ``nydusd_path``."""
        path = body.get("nydusd_path") if isinstance(body, dict) else None
        if not path or not isinstance(path, str):
            raise ControllerError(HTTPStatus.BAD_REQUEST, "body must be a JSON object with 'nydusd_path'")
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ControllerError(HTTPStatus.BAD_REQUEST, f"nydusd_path {path}: not an executable file")
        policy = body.get("policy") or "rolling"
        if policy not in ("rolling", "immediate"):
            raise ControllerError(HTTPStatus.BAD_REQUEST, f"policy {policy!r}: must be rolling or immediate")
        version = body.get("version") or ""
        if version:
            try:
                said = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
            except (OSError, subprocess.SubprocessError) as exc:
                raise ControllerError(HTTPStatus.BAD_REQUEST, f"{path} --version: {exc}") from None
            if str(version).lstrip("v") not in said:
                raise ControllerError(HTTPStatus.BAD_REQUEST,
                                      f"{path} --version says {said.strip()!r}, not version {version}")
        try:
            return self.sn.upgrade_daemons(path)
        except UpgradeRefused as exc:
            raise ControllerError(HTTPStatus.NOT_IMPLEMENTED, str(exc)) from None
        except NydusError as exc:
            raise ControllerError(HTTPStatus.INTERNAL_SERVER_ERROR, describe(exc)) from None

    # -- serving --------------------------------------------------------------------------------

    def start(self) -> bool:
        """Listen on the socket; False (logged) when another live process already answers there."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.settimeout(1)
                probe.connect(str(self.path))
                log.error("system.address %s: another process serves there; system controller not started",
                          self.path)
                return False
            except OSError:
                self.path.unlink(missing_ok=True)  # stale, from a process that died
            finally:
                probe.close()
        elif self.path.exists():
            log.error("system.address %s: exists and is not a socket; system controller not started",
                      self.path)
            return False
        handler = _handler(self)
        old = os.umask(0o177)  # 0600 from the first moment
        try:
            server = socketserver.ThreadingUnixStreamServer(str(self.path), handler)
        finally:
            os.umask(old)
        server.daemon_threads = True
        if self.uid or self.gid:
            os.chown(self.path, self.uid, self.gid)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="system-controller", daemon=True)
        self._thread.start()
        log.info("system controller on %s", self.path)
        return True

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self.path.unlink(missing_ok=True)


def _handler(ctl: SystemController) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """One request to the system controller."""

        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("system controller: " + format, *args)

        def _answer(self, status: int, payload: Any) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise ControllerError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
                raw = self.rfile.read(length) if length else b""
                if (method, path) == ("GET", "/api/v1/daemons"):
                    self._answer(200, ctl.describe_daemons())
                elif (method, path) == ("GET", "/api/v1/daemons/records"):
                    self._answer(200, ctl.daemon_records())
                elif (method, path) == ("PUT", "/api/v1/daemons/upgrade"):
                    try:
                        body = json.loads(raw or b"null")
                    except ValueError:
                        raise ControllerError(HTTPStatus.BAD_REQUEST, "body is not JSON") from None
                    self._answer(200, ctl.upgrade(body))
                elif path in ("/api/v1/daemons", "/api/v1/daemons/records", "/api/v1/daemons/upgrade"):
                    raise ControllerError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} {path}: not allowed")
                else:
                    raise ControllerError(HTTPStatus.NOT_FOUND, f"{method} {path}: no such endpoint")
            except ControllerError as exc:
                self._answer(exc.status, {"code": "Unknown", "message": str(exc)})
            except (NydusError, OSError, ValueError) as exc:
                log.error("system controller: %s %s: %s", method, path, describe(exc))
                self._answer(500, {"code": "Unknown", "message": describe(exc)})

        def do_GET(self) -> None:  # every method goes to one router, which names what it does not allow
            self._route(self.command)

        do_PUT = do_POST = do_DELETE = do_GET

    return Handler
