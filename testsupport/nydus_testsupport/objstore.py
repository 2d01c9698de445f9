"""Test servers for the object-store backends (s3, oss), all on 127.0.0.1.

- :class:`MotoServer`: ``moto`` in server mode (an S3 API; oss2 also speaks to it path-style, and
  moto checks no signatures), a :class:`~nydus_testkit.servers.ServerProcess` on a free port,
  run through :mod:`nydus_testsupport.moto_server` so that OSS-signed requests always reach S3.
- :class:`ForwardProxy`: a plain-HTTP forwarding proxy that counts what it forwards and can be
  stopped and started again on the same port (a stand-in for a Dragonfly dfdaemon proxy).
- :class:`FlakyFront`: a reverse proxy in front of a server that fails the next N requests (an HTTP
  error status, or a connection reset) before forwarding again.

For a server that accepts connections and never answers, use
:class:`~nydus_testkit.servers.BlackholeServer`. ``moto`` and ``boto3`` are test dependencies
(the root ``dev`` group), imported only when used.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nydus_testkit.servers import (
    LOCALHOST,
    BackgroundHTTPServer,
    HostPort,
    ServerProcess,
    free_port,
    reset_connection,
    serving,
)

__all__ = ["ACCESS_KEY_ID", "ACCESS_KEY_SECRET", "FlakyFront", "ForwardProxy", "MotoServer", "shared_moto"]

#: Credentials the test servers are used with (moto accepts any).
ACCESS_KEY_ID = "nydus-test-key-id"
ACCESS_KEY_SECRET = "nydus-test-SECRET-0123456789abcdef"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) < 500
    except (urllib.error.URLError, OSError):
        return False


class MotoServer(HostPort):
    """``moto`` in server mode on 127.0.0.1 and a free port; a context manager.

    ``endpoint`` is ``127.0.0.1:PORT`` (no scheme, as the s3 and oss configs want it).
    """

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, start_timeout: float = 60.0) -> None:
        self.host = LOCALHOST
        self.port = free_port()
        log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.gettempdir())
        env = {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": ACCESS_KEY_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.process = ServerProcess(
            [sys.executable, "-m", f"{__package__}.moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
            log_path=log_dir / f"moto-{self.port}.log",
            ready=lambda: _answers(self.url + "/moto-api/"),
            env=env,
            start_timeout=start_timeout,
        )

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``."""
        return self.address

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process.running

    def start(self) -> MotoServer:
        """Start the server and wait until it answers HTTP."""
        self.process.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()

    def reset(self) -> None:
        """Drop every bucket and object (moto's reset API)."""
        req = urllib.request.Request(self.url + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def client(self) -> Any:
        """Return a boto3 S3 client for this server (path-style, the test credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=ACCESS_KEY_SECRET,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (with boto3) and return its name."""
        self.client().create_bucket(Bucket=name)
        return name

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_shared: MotoServer | None = None
_shared_lock = threading.Lock()


def shared_moto() -> MotoServer:
    """Return one moto server for the whole test process, started on first use (it stops at exit).

    Test modules share it to save a start-up each; each module uses buckets of its own names.
    """
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = MotoServer().start()
        return _shared


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Forwards absolute-form requests (``GET http://host/path``); ``GET /server/ping`` (or ``/ping``)
    answers 200."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        proxy: ForwardProxy = serving(self).context
        proxy._track(self.connection, True)

    def finish(self) -> None:
        proxy: ForwardProxy = serving(self).context
        proxy._track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _relay(self) -> None:
        owner: ForwardProxy = serving(self).context
        if not self.path.startswith("http://"):
            if urlsplit(self.path).path in ("/server/ping", "/ping"):
                owner._pinged()
                self._reply(200, b"ok")
            else:
                self._reply(400, b"this proxy forwards absolute-form http:// requests only")
            return
        target = urlsplit(self.path)
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        owner._count(self.command, self.path)  # before relaying: a client with its answer sees the count
        _forward(self, target.hostname or "127.0.0.1", target.port or 80, path)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _relay


class ForwardProxy:
    """A plain-HTTP forwarding proxy on 127.0.0.1 that counts the requests it forwarded.

    ``forwarded`` counts them by method, ``requests`` lists ``(method, absolute URL)`` and ``pings``
    counts health checks. ``stop()`` closes the port (connections are refused, open ones are dropped);
    ``start()`` serves the same port again. ``ping_url`` answers 200 while it runs, like dfdaemon's
    health endpoint.
    """

    def __init__(self) -> None:
        self.forwarded: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.pings = 0
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server = BackgroundHTTPServer(_ProxyHandler, context=self)

    def _count(self, method: str, url: str) -> None:
        with self._lock:
            self.forwarded[method] = self.forwarded.get(method, 0) + 1
            self.requests.append((method, url))

    def _pinged(self) -> None:
        with self._lock:
            self.pings += 1

    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    @property
    def total(self) -> int:
        """How many requests were forwarded so far."""
        with self._lock:
            return sum(self.forwarded.values())

    @property
    def url(self) -> str:
        """The proxy URL to configure (``http://127.0.0.1:PORT``)."""
        return self._server.url

    @property
    def ping_url(self) -> str:
        """The health-check URL (dfdaemon's path)."""
        return self._server.url + "/server/ping"

    def start(self) -> ForwardProxy:
        """Serve (again) on the proxy's port."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open (keep-alive) connections; new ones are refused until :meth:`start`."""
        self._server.stop()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _forward(handler: http.server.BaseHTTPRequestHandler, host: str, port: int, path: str) -> int:
    """Send ``handler``'s request to ``host:port`` and relay the answer; return its status."""
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length) if length else None
    headers = {k: v for k, v in handler.headers.items() if k.lower() != "proxy-connection"}
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(handler.command, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    handler.send_response(resp.status)
    head = handler.command == "HEAD"
    for key, value in resp.getheaders():
        name = key.lower()
        if name not in ("transfer-encoding", "connection") and (head or name != "content-length"):
            handler.send_header(key, value)
    if not head:
        handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)
    return resp.status


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        front: FlakyFront = serving(self).context
        failure = front._take_failure()
        if failure == "reset":
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            reset_connection(self)
            return
        if failure is not None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
                b"<Message>injected failure</Message></Error>"
            )
            self.send_response(int(failure))
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        front._count()
        _forward(self, front.origin_host, front.origin_port, self.path)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle


class FlakyFront:
    """A reverse proxy on 127.0.0.1 in front of ``origin`` (``host:port``) that fails on demand.

    :meth:`fail_next` makes the next ``count`` requests fail with an HTTP ``status`` (an S3/OSS-style
    error body) or, with ``status="reset"``, a TCP reset; later requests are forwarded. ``failed`` and
    ``forwarded`` count what happened.
    """

    def __init__(self, origin: str) -> None:
        host, _, port = origin.rpartition(":")
        self.origin_host, self.origin_port = host, int(port)
        self.failed = 0
        self.forwarded = 0
        self._plan: list[str] = []
        self._lock = threading.Lock()
        self._server = BackgroundHTTPServer(_FlakyHandler, context=self)

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``: configure this as the backend's endpoint."""
        return self._server.address

    def fail_next(self, count: int, status: int | str = 503) -> None:
        """Fail the next ``count`` requests with ``status`` (an HTTP code, or ``"reset"``)."""
        with self._lock:
            self._plan = [str(status)] * count

    def _take_failure(self) -> str | None:
        with self._lock:
            if not self._plan:
                return None
            self.failed += 1
            return self._plan.pop(0)

    def _count(self) -> None:
        with self._lock:
            self.forwarded += 1

    def start(self) -> FlakyFront:
        """Start serving."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def __enter__(self) -> FlakyFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
