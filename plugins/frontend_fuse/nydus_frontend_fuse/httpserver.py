"""The daemon's admin API server: hypercorn's trio worker serving a small ASGI router on a unix socket.

Hypercorn (a maintained ASGI server: h11 for HTTP/1.1, keep-alive, chunked bodies, timeouts) runs
on trio, the daemon's event loop, on the socket :func:`open_listener` bound before the mount (mode
0600, a stale socket of a dead daemon replaced, a live one refused). :class:`HttpServer` is the
ASGI application: it routes ``(method, path)`` to async handlers that take a :class:`Request` and
return ``(status, json-able body or None)``. What it guarantees on top of hypercorn:

- a request body over :data:`MAX_BODY` is refused with 413 before it is buffered;
- every error answers upstream's ``{"code": ..., "message": ...}`` on one line (404 unknown path,
  405 known path with another method, 400 bad JSON, 413, 500 for a handler bug, logged);
- the socket file is removed when the server stops.

Cost, measured: importing hypercorn's trio worker (it pulls in h2, hpack and wsproto, which this API
does not use) takes 0.17-0.23 s of CPU on this project's loaded 2-core machine (h11 alone: 0.02 s),
once per daemon, on a worker thread after the FUSE mount is up (figures in the plugin README).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs

import trio

from nydus_core.errors import describe
from nydus_core.redact import redact

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

log = logging.getLogger("nydusd.api")

#: The largest request body accepted (a mount request carries a config: a few KiB).
MAX_BODY = 16 << 20
#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE = 60.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


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
        try:
            return json.loads(self.body)
        except RecursionError:
            raise HttpError(400, "request body: JSON nested too deeply") from None


class HttpError(Exception):
    """Raised by handlers to answer with an error status and upstream's ``{code, message}`` body.

    The message is redacted (``nydus_core.redact``): URL credentials never reach an API client."""

    def __init__(self, status: int, message: str, code: str = "UNDEFINED") -> None:
        super().__init__(redact(message))
        self.status = status
        self.code = code


Handler = Callable[[Request], Awaitable[tuple[int, Any]]]


class _BodyTooLarge(Exception):
    pass


class HttpServer:
    """An ASGI app routing ``(method, path)`` to async handlers; :meth:`serve` runs it on a socket."""

    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        self.routes = routes
        self.path: str | None = None

    async def serve(self, raw: socket.socket, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve connections on a socket from :func:`open_listener` until cancelled; the socket
        file is removed (and ``raw`` closed) on the way out."""
        # imported on a worker thread: the FUSE requests of the trio thread go on meanwhile
        await trio.to_thread.run_sync(importlib.import_module, "hypercorn.trio")
        from hypercorn.config import Config
        from hypercorn.trio import serve

        path = raw.getsockname()
        self.path = path
        config = Config()
        # hypercorn takes the listening socket by descriptor and closes it: give it its own
        config.bind = [f"fd://{os.dup(raw.fileno())}"]
        raw.close()
        config.keep_alive_timeout = KEEP_ALIVE
        config.include_server_header = False
        config.accesslog = None
        server_log = logging.getLogger("nydusd.api.server")
        server_log.setLevel(logging.WARNING)  # not its "Running on ... (CTRL + C to quit)"
        config.errorlog = server_log
        try:
            await serve(cast("ASGIFramework", self), config, mode="asgi", task_status=task_status)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point (lifespan events are acknowledged; only HTTP is served)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        try:
            body = await _read_body(scope, receive)
        except _BodyTooLarge:
            status, answer = 413, {"code": "UNDEFINED",
                                   "message": f"request body too large (more than {MAX_BODY} bytes)"}
        else:
            query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1"),
                                                    keep_blank_values=True).items()}
            request = Request(scope["method"].upper(), scope["path"].rstrip("/") or "/", query, body)
            status, answer = await self._dispatch(request)
        payload = b"" if answer is None else json.dumps(answer).encode()
        headers = [(b"content-length", str(len(payload)).encode())]
        if payload:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

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
            return 500, {"code": "UNDEFINED", "message": f"internal error: {describe(exc)}"}


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    """Return the request body; _BodyTooLarge as soon as it is known to exceed :data:`MAX_BODY`."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY:
            raise _BodyTooLarge
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            raise _BodyTooLarge
        if not message.get("more_body", False):
            break
    return bytes(body)


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
