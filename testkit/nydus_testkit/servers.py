"""Generic helpers for tests that start real servers on 127.0.0.1.

- :func:`free_port`, :func:`wait_for_port`, :func:`wait_until`: ports and readiness.
- :class:`ServerProcess`: a child process (a registry, moto, nginx...) with a log file, a readiness
  check and a clean stop (terminate, then kill), usable as a context manager.
- :class:`BackgroundHTTPServer`: an ``http.server`` handler served from a thread, stoppable and
  restartable on the same port (for proxies a test takes down and brings back);
  :func:`reset_connection` drops a handler's connection with a TCP reset (fault injection).
- :class:`BlackholeServer`: accepts connections and never answers (a hung server).

Every server binds to 127.0.0.1 only. Everything is cleaned up on ``stop()`` and, as a safety net,
at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import http.server
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LOCALHOST",
    "BackgroundHTTPServer",
    "BlackholeServer",
    "HostPort",
    "ServerProcess",
    "free_port",
    "port_open",
    "reset_connection",
    "serving",
    "wait_for_port",
    "wait_until",
]

LOCALHOST = "127.0.0.1"

_live: weakref.WeakSet[Any] = weakref.WeakSet()


def _stop_all() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all)


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02,
               message: str = "condition") -> None:
    """Poll ``predicate`` until it is true; raise ``TimeoutError`` naming ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not reached within {timeout:.1f}s")
        time.sleep(interval)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until ``host:port`` accepts connections."""
    wait_until(lambda: port_open(host, port), timeout, message=f"{host}:{port} listening")


class ServerProcess:
    """A server child process with a log file and a readiness check.

    ``ready`` is called (repeatedly) after start until it returns true; if the process exits first,
    or ``start_timeout`` passes, :meth:`start` raises ``RuntimeError`` quoting the end of the log.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: str | os.PathLike[str],
        ready: Callable[[], bool] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.ready = ready
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """Return the last ``lines`` lines of the log (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> ServerProcess:
        """Start the process and wait until it is ready."""
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env} if self.env is not None else None
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.cwd, start_new_session=True,
            )
        _live.add(self)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[0]} exited with {self.proc.returncode} while starting; "
                                   f"log:\n{self.log_tail()}")
            try:
                if self.ready is None or self.ready():
                    return self
            except Exception:
                pass
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"{self.argv[0]} not ready within {self.start_timeout}s; log:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.03)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process group (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        _live.discard(self)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _ThreadingServer(http.server.ThreadingHTTPServer):
    owner: BackgroundHTTPServer
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self._conns_lock:
            self._conns.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close every open client connection (keep-alive ones included)."""
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()


def reset_connection(handler: http.server.BaseHTTPRequestHandler) -> None:
    """Close ``handler``'s client connection with a TCP RST (the client sees "connection reset")."""
    handler.close_connection = True
    try:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
    except OSError:
        pass


def serving(handler: http.server.BaseHTTPRequestHandler) -> BackgroundHTTPServer:
    """Return the :class:`BackgroundHTTPServer` whose thread runs ``handler``'s request."""
    server = handler.server
    if not isinstance(server, _ThreadingServer):
        raise TypeError(f"{type(handler).__name__} is not served by a BackgroundHTTPServer")
    return server.owner


class HostPort:
    """Where a local test server listens: ``host`` and ``port``, and the ``address`` and ``url``
    made of them."""

    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.address}"


class BackgroundHTTPServer(HostPort):
    """Serve ``handler`` (an ``http.server.BaseHTTPRequestHandler`` subclass) from a thread.

    The port is fixed at the first start (``port=0`` picks a free one) so :meth:`stop` followed by
    :meth:`start` brings the server back at the same address. The handler reaches this object as
    ``self.server.owner`` (typed: :func:`serving`), and through it ``context``: whatever the creator
    wants its handler to see (the proxy or fake the handler serves for).
    """

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler], *,
                 host: str = LOCALHOST, port: int = 0, context: Any = None) -> None:
        self.handler = handler
        self.context = context
        self.host = host
        self.port = port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the server is accepting requests."""
        return self._server is not None

    def start(self) -> BackgroundHTTPServer:
        """Bind (retrying briefly if the port is still held) and serve in a daemon thread."""
        if self._server is not None:
            return self
        deadline = time.monotonic() + 5.0
        while True:
            try:
                server = _ThreadingServer((self.host, self.port), self.handler)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"http-{self.port}", daemon=True)
        self._thread.start()
        _live.add(self)
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (open connections are closed too)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(5)
        _live.discard(self)

    def __enter__(self) -> BackgroundHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BlackholeServer:
    """A TCP listener that accepts connections and never answers (a hung server).

    Used to check that clients give up within their timeouts instead of hanging.
    """

    def __init__(self, host: str = LOCALHOST) -> None:
        self.host = host
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def start(self) -> BlackholeServer:
        """Listen and accept connections silently in a daemon thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        _live.add(self)
        return self

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)

    def stop(self) -> None:
        """Close the listener and every accepted connection."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for conn in self._conns:
            conn.close()
        self._conns.clear()
        _live.discard(self)

    def __enter__(self) -> BlackholeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
