"""Failover and hot upgrade of an ``erofs``-driver nydusd: the FUSE descriptor and the state needed
to continue are handed to a supervisor, and a new daemon takes them over with no unmount.

The supervisor is a unix socket (``nydusd --supervisor SOCK --id ID``; the snapshotter is it, and
:class:`Supervisor` here is its implementation). The daemon connects and sends ``b"S"``, then one
message: its state as JSON with the blob-device connection's ``/dev/fuse`` descriptor attached
(``SCM_RIGHTS``). It does so as soon as it is serving and after every API mount or umount, and on
``PUT /api/v1/daemon/fuse/sendfd``. The supervisor keeps a duplicate of the descriptor, so the FUSE
connection (and with it every EROFS mount on the blob devices) outlives the daemon.

A new daemon started with ``--upgrade`` (same flags) serves its API in state ``INIT`` and mounts
nothing. ``PUT /api/v1/daemon/fuse/takeover`` makes it connect, send ``b"T"`` and receive state and
descriptor; it reopens the images (same bootstraps and configs), rebuilds the blob devices with the
same inode numbers, and serves the live connection without INIT (:class:`~.fuse_session.FuseSession`
with ``initialised=True``). Requests the dead daemon had read but not answered are still pending in
the kernel: ``--failover-policy resend`` (the default) writes ``FUSE_NOTIFY_RESEND`` (Linux ≥ 6.9)
so the kernel queues them again and they are served; ``flush`` does the same and answers those
re-sent requests (``FUSE_UNIQUE_RESEND`` set) with EIO; ``none`` leaves them waiting.
``PUT /api/v1/daemon/start`` is then a no-op (the daemon is RUNNING).

A live upgrade is the same handover while the old daemon still runs: the new one takes over, then
the old one is killed (its readers compete with the new ones until then; both serve the same
answers). With ``--supervisor`` the daemon starts no reaper: the supervisor owns the mounts.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from nydus_core.errors import NydusError

log = logging.getLogger("nydusd")

__all__ = ["FUSE_NOTIFY_RESEND", "Supervisor", "failover_routes", "fetch_state", "notify_resend",
           "send_state"]

#: ``enum fuse_notify_code``: re-queue every request read but not answered (Linux 6.9)
FUSE_NOTIFY_RESEND = 7
#: set by the kernel in the ``unique`` of a request it re-sent
FUSE_UNIQUE_RESEND = 1 << 63
_MAX = 16 << 20


class FailoverError(NydusError):
    """The supervisor could not be reached or had no state."""


def _send_msg(sock: socket.socket, payload: bytes, fd: int) -> None:
    sock.sendall(struct.pack("<I", len(payload)))
    socket.send_fds(sock, [payload], [fd])


def _recv_msg(sock: socket.socket) -> tuple[bytes, int]:
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise FailoverError("supervisor connection closed before a message")
        head += chunk
    (n,) = struct.unpack("<I", head)
    if n > _MAX:
        raise FailoverError(f"supervisor message of {n} bytes refused")
    data, fds, _flags, _addr = socket.recv_fds(sock, n, 4)
    fd = fds[0] if fds else -1
    for extra in fds[1:]:
        os.close(extra)
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            break
        data += more
    if len(data) != n or fd < 0:
        if fd >= 0:
            os.close(fd)
        raise FailoverError("supervisor message incomplete (no descriptor or short)")
    return data, fd


def send_state(supervisor: str, daemon_id: str, state: dict[str, Any], fd: int) -> None:
    """Give ``state`` and FUSE descriptor ``fd`` to the supervisor at ``supervisor``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(supervisor)
            s.sendall(b"S")
            _send_msg(s, json.dumps({"id": daemon_id, "state": state}).encode(), fd)
            s.recv(1)  # the supervisor's acknowledgement (or EOF)
    except OSError as exc:
        raise FailoverError(f"--supervisor {supervisor}: cannot send: {exc.strerror or exc}") from None


def fetch_state(supervisor: str, daemon_id: str) -> tuple[dict[str, Any], int]:
    """Ask the supervisor for the state and FUSE descriptor of daemon ``daemon_id``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(supervisor)
            s.sendall(b"T" + daemon_id.encode() + b"\n")
            data, fd = _recv_msg(s)
    except OSError as exc:
        raise FailoverError(f"--supervisor {supervisor}: cannot fetch: {exc.strerror or exc}") from None
    msg = json.loads(data)
    if not isinstance(msg, dict) or not isinstance(msg.get("state"), dict):
        os.close(fd)
        raise FailoverError(f"--supervisor {supervisor}: no state for daemon {daemon_id!r}")
    return msg["state"], fd


def notify_resend(fd: int) -> bool:
    """Ask the kernel to queue again the requests read but not answered on ``fd``; return whether
    this kernel knows ``FUSE_NOTIFY_RESEND``."""
    try:
        os.write(fd, struct.pack("<IiQ", 16, FUSE_NOTIFY_RESEND, 0))
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOSYS):
            log.warning("this kernel has no FUSE_NOTIFY_RESEND (Linux >= 6.9): requests in flight "
                        "when the old daemon died stay unanswered")
            return False
        raise
    return True


def failover_routes(daemon: Any) -> dict[tuple[str, str], Any]:
    """``PUT /api/v1/daemon/fuse/sendfd`` and ``PUT /api/v1/daemon/fuse/takeover`` (erofs driver)."""
    from .httpserver import HttpError, Request

    def need(name: str) -> Any:
        fn = getattr(daemon, name, None)
        if fn is None:
            raise HttpError(400, "failover needs --fs-driver erofs (the fusedev driver restarts instead)")
        if not daemon.settings.supervisor:
            raise HttpError(400, "failover needs --supervisor SOCK and --id ID")
        return fn

    async def put_sendfd(req: Request) -> tuple[int, Any]:
        await need("publish_state")()
        return 204, None

    async def put_takeover(req: Request) -> tuple[int, Any]:
        try:
            await need("takeover")()
        except (NydusError, OSError, KeyError, ValueError) as exc:
            raise HttpError(400, f"takeover failed: {exc}") from None
        return 204, None

    return {("PUT", "/api/v1/daemon/fuse/sendfd"): put_sendfd,
            ("PUT", "/api/v1/daemon/fuse/takeover"): put_takeover}


class Supervisor:
    """The supervisor end: keeps each daemon's latest state and a duplicate of its descriptor, and
    hands them to the daemon that takes over. Serves ``path`` on a thread until :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        Path(self.path).unlink(missing_ok=True)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self._sock.listen(8)
        self._lock = threading.Lock()
        self._states: dict[str, tuple[bytes, int]] = {}
        self._received = threading.Condition(self._lock)
        self._counts: dict[str, int] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="nydusd-supervisor-socket", daemon=True)
        self._thread.start()

    def has_state(self, daemon_id: str) -> bool:
        """Whether a state of ``daemon_id`` is held."""
        with self._lock:
            return daemon_id in self._states

    def wait_state(self, daemon_id: str, timeout: float = 10.0, newer_than: int = 0) -> bool:
        """Wait until a state of ``daemon_id`` (the ``newer_than``-th or later) has arrived."""
        with self._received:
            return self._received.wait_for(lambda: self.count(daemon_id) > newer_than, timeout)

    def count(self, daemon_id: str) -> int:
        """How many states ``daemon_id`` has sent (call with or without the lock)."""
        return self._counts.get(daemon_id, 0)

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._handle(conn)
                except (OSError, NydusError, ValueError) as exc:
                    log.warning("supervisor %s: %s", self.path, exc)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        kind = conn.recv(1)
        if kind == b"S":
            data, fd = _recv_msg(conn)
            daemon_id = str(json.loads(data).get("id", ""))
            with self._received:
                old = self._states.get(daemon_id)
                self._states[daemon_id] = (data, fd)
                self._counts[daemon_id] = self._counts.get(daemon_id, 0) + 1
                self._received.notify_all()
            if old is not None:
                os.close(old[1])
            conn.sendall(b"k")
        elif kind == b"T":
            line = b""
            while not line.endswith(b"\n"):
                c = conn.recv(1)
                if not c:
                    break
                line += c
            daemon_id = line.decode().strip()
            with self._lock:
                held = self._states.get(daemon_id)
            if held is None:
                raise FailoverError(f"no state held for daemon {daemon_id!r}")
            _send_msg(conn, held[0], held[1])

    def take(self, daemon_id: str) -> dict[str, Any] | None:
        """Drop what ``daemon_id`` sent and return its state (None if nothing was held)."""
        with self._lock:
            held = self._states.pop(daemon_id, None)
        if held is None:
            return None
        os.close(held[1])
        state = json.loads(held[0]).get("state")
        return state if isinstance(state, dict) else None

    def forget(self, daemon_id: str) -> None:
        """Drop what ``daemon_id`` sent (its daemon was stopped on purpose)."""
        with self._lock:
            held = self._states.pop(daemon_id, None)
        if held is not None:
            os.close(held[1])

    def close(self) -> None:
        """Stop serving and close every held descriptor (connections with no other holder end)."""
        self._closed = True
        self._sock.close()
        Path(self.path).unlink(missing_ok=True)
        with self._lock:
            for _data, fd in self._states.values():
                os.close(fd)
            self._states.clear()

