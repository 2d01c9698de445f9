"""A small HTTP/1.1 server on a trio unix-socket listener (h11 does the protocol).

It serves the daemon's admin API: requests are tiny JSON documents, so each connection is handled
by one task that reads a request, awaits the route's handler and writes the answer, with
keep-alive. Handlers return ``(status, json-able body or None)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

log = logging.getLogger("nydusd.api")

MAX_BODY = 16 << 20
_IDLE_TIMEOUT = 300.0


@dataclass
class Request:
    """One parsed request: method, path, query (first value of each key) and JSON body."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Return the body decoded as JSON (``None`` for an empty body)."""
        if not self.body.strip():
            return None
        return json.loads(self.body)


class HttpError(Exception):
    """Raised by handlers to answer with an error status and upstream's ``{code, message}`` body."""

    def __init__(self, status: int, message: str, code: str = "UNDEFINED") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


Handler = Callable[[Request], Awaitable[tuple[int, Any]]]


class HttpServer:
    """Routes ``(method, path)`` to async handlers and serves them on a unix socket."""

    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        self.routes = routes
        self.path: str | None = None

    async def serve(self, raw: socket.socket, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve connections on a socket from :func:`open_listener` until cancelled; the socket
        file is removed on the way out."""
        path = raw.getsockname()
        self.path = path
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(raw))
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                async with listener:
                    while True:
                        stream = await listener.accept()
                        nursery.start_soon(self._connection, stream)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            async with stream:
                while True:
                    with trio.move_on_after(_IDLE_TIMEOUT) as idle:
                        request = await self._read_request(conn, stream)
                    if idle.cancelled_caught or request is None:
                        return
                    status, body = await self._dispatch(request)
                    await self._respond(conn, stream, status, body)
                    if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                        return
                    try:
                        conn.start_next_cycle()
                    except h11.LocalProtocolError:
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
            log.debug("api connection closed: %s", exc)

    async def _read_request(self, conn: h11.Connection, stream: trio.SocketStream) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data or b"")
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise h11.RemoteProtocolError("request body too large")
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                url = urlsplit(head.target.decode("latin-1"))
                query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                return Request(head.method.decode("ascii").upper(), url.path.rstrip("/") or "/",
                               query, bytes(body))

    async def _dispatch(self, request: Request) -> tuple[int, Any]:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            allowed = [m for (m, p) in self.routes if p == request.path]
            if allowed:
                return 405, {"code": "UNDEFINED",
                             "message": f"method {request.method} not allowed on {request.path}"}
            return 404, {"code": "UNDEFINED", "message": f"no such API path: {request.path}"}
        try:
            return await handler(request)
        except HttpError as exc:
            return exc.status, {"code": exc.code, "message": str(exc)}
        except json.JSONDecodeError as exc:
            return 400, {"code": "UNDEFINED", "message": f"request body is not valid JSON: {exc}"}
        except Exception as exc:  # a bug in a handler must not kill the daemon
            log.exception("API %s %s failed", request.method, request.path)
            return 500, {"code": "UNDEFINED", "message": f"internal error: {type(exc).__name__}: {exc}"}

    async def _respond(self, conn: h11.Connection, stream: trio.SocketStream, status: int, body: Any) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [("content-length", str(len(payload)))]
        if payload:
            headers.append(("content-type", "application/json"))
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        out = conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
        if payload:
            out += conn.send(h11.Data(data=payload))
        out += conn.send(h11.EndOfMessage())
        await stream.send_all(out)


def open_listener(path: str) -> socket.socket:
    """Bind and listen on a unix socket at ``path`` (mode 0600), replacing a stale socket file
    left by a dead daemon; refuse when another process listens there or the path is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"{path}: exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: a leftover of a daemon that died
        else:
            raise FileExistsError(f"{path}: another daemon is listening on this API socket")
        finally:
            probe.close()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        raw.bind(path)
        os.chmod(path, 0o600)
        raw.listen(64)
    except BaseException:
        raw.close()
        raise
    return raw
