"""The admin API's HTTP/1.1 server (hypercorn + our router) on a unix socket: routing, errors,
keep-alive, chunked bodies, the body cap, the socket's mode and removal."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import trio
from nydus_frontend_fuse.ctl import ApiClient
from nydus_frontend_fuse.httpserver import MAX_BODY, HttpError, HttpServer, Request, open_listener


async def _echo(req: Request) -> tuple[int, Any]:
    return 200, {"method": req.method, "path": req.path, "query": req.query, "body": req.json()}


async def _fail(req: Request) -> tuple[int, Any]:
    raise HttpError(409, "already there", "ALREADY_EXISTS")


async def _bug(req: Request) -> tuple[int, Any]:
    raise RuntimeError("boom")


def _exchange(path: Path, raw: bytes, responses: int = 1) -> list[tuple[int, dict[str, Any] | None]]:
    """Send raw bytes, read ``responses`` HTTP responses (content-length framed)."""

    async def main() -> list[tuple[int, dict[str, Any] | None]]:
        server = HttpServer({("GET", "/x"): _echo, ("POST", "/x"): _echo, ("PUT", "/fail"): _fail,
                             ("GET", "/bug"): _bug})
        out: list[tuple[int, dict[str, Any] | None]] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, open_listener(str(path)))
            stream = await trio.open_unix_socket(str(path))
            await stream.send_all(raw)
            buf = b""
            while len(out) < responses:
                while b"\r\n\r\n" not in buf:
                    buf += await stream.receive_some(65536)
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode().split("\r\n")
                status = int(lines[0].split()[1])
                length = next(int(ln.split(":")[1]) for ln in lines
                              if ln.lower().startswith("content-length"))
                while len(buf) < length:
                    buf += await stream.receive_some(65536)
                body, buf = buf[:length], buf[length:]
                out.append((status, json.loads(body) if body else None))
            await stream.aclose()
            nursery.cancel_scope.cancel()
        return out

    return trio.run(main)


def test_routes_query_and_keep_alive(tmp_path: Path) -> None:
    sock = tmp_path / "api.sock"
    body = json.dumps({"source": "/b"}).encode()
    raw = (b"GET /x/?mountpoint=%2Fsub&id=7 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
           + b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")
    got = _exchange(sock, raw, 3)
    assert got[0] == (200, {"method": "GET", "path": "/x", "query": {"mountpoint": "/sub", "id": "7"},
                            "body": None})
    assert got[1][1]["body"] == {"source": "/b"}
    assert got[2][1]["body"] == {"a": 1}
    assert not sock.exists(), "the socket file is removed when the server stops"


@pytest.mark.parametrize(("request_line", "status", "message"), [
    (b"GET /nope", 404, "no such API path"),
    (b"DELETE /x", 405, "not allowed"),
    (b"PUT /fail", 409, "already there"),
    (b"GET /bug", 500, "internal error: RuntimeError: boom"),
])
def test_errors_have_upstreams_shape(tmp_path: Path, request_line: bytes, status: int, message: str) -> None:
    [(code, body)] = _exchange(tmp_path / "s", request_line + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert code == status and body is not None and message in body["message"] and "code" in body


def test_bad_json_is_a_400(tmp_path: Path) -> None:
    [(code, body)] = _exchange(tmp_path / "s", b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n{x}")
    assert code == 400 and "not valid JSON" in body["message"]


def test_stale_socket_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # a socket file nobody listens on: what a killed daemon leaves
    live = open_listener(str(path))
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        with pytest.raises(FileExistsError, match="another daemon"):
            open_listener(str(path))
    finally:
        live.close()
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(FileExistsError, match="not a socket"):
        open_listener(str(regular))


def _with_client(path: Path, fn: Any) -> Any:
    """Serve the echo routes on ``path`` and run ``fn(client)`` on a thread (a blocking client)."""

    async def main() -> Any:
        server = HttpServer({("POST", "/x"): _echo, ("GET", "/x"): _echo})
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, open_listener(str(path)))
            assert oct(os.stat(path).st_mode & 0o777) == "0o600"
            with ApiClient(str(path), timeout=30) as client:
                out = await trio.to_thread.run_sync(fn, client)
            nursery.cancel_scope.cancel()
        return out

    return trio.run(main)


def test_body_cap_answers_413_in_one_json_line(tmp_path: Path) -> None:
    def exchange(client: ApiClient) -> list[tuple[int, bytes]]:
        out = []
        for body in (bytes(MAX_BODY + 1),  # Content-Length says it: refused before reading
                     (bytes(1 << 20) for _ in range((MAX_BODY >> 20) + 1)),  # chunked: refused on the way
                     b'{"fits": true}'):
            resp = client.request("POST", "/x", content=body)
            out.append((resp.status_code, resp.content))
        return out

    too_big, chunked, fits = _with_client(tmp_path / "s", exchange)
    for status, body in (too_big, chunked):
        assert status == 413 and b"\n" not in body
        assert json.loads(body) == {"code": "UNDEFINED",
                                    "message": f"request body too large (more than {MAX_BODY} bytes)"}
    assert fits[0] == 200 and json.loads(fits[1])["body"] == {"fits": True}
    assert not (tmp_path / "s").exists()


def test_client_reports_an_absent_or_dead_socket_in_one_line(tmp_path: Path) -> None:
    from nydus_frontend_fuse.ctl import ApiError

    with pytest.raises(ApiError, match=r"/nope\.sock: no such API socket"):
        ApiClient(str(tmp_path / "nope.sock")).call("GET", "/x")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(tmp_path / "dead.sock"))
    dead.close()
    with pytest.raises(ApiError, match="connection refused"):
        ApiClient(str(tmp_path / "dead.sock")).call("GET", "/x")
