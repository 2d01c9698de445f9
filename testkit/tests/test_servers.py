"""Tests of the generic server helpers in nydus_testkit.servers."""

from __future__ import annotations

import http.server
import socket
import sys
import time
import urllib.request

import pytest
from nydus_testkit.servers import (
    BackgroundHTTPServer,
    BlackholeServer,
    ServerProcess,
    free_port,
    port_open,
    wait_for_port,
)


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello " + str(self.server.owner.port).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_background_server_restarts_on_same_port() -> None:
    server = BackgroundHTTPServer(_Hello).start()
    try:
        port = server.port
        assert urllib.request.urlopen(server.url, timeout=2).read() == f"hello {port}".encode()
        server.stop()
        assert not port_open("127.0.0.1", port)
        server.start()
        assert server.port == port
        assert urllib.request.urlopen(server.url, timeout=2).read() == f"hello {port}".encode()
    finally:
        server.stop()


def test_server_process_ready_and_stop(tmp_path) -> None:
    port = free_port()
    proc = ServerProcess(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        log_path=tmp_path / "log", ready=lambda: port_open("127.0.0.1", port), cwd=tmp_path,
    )
    with proc:
        assert proc.running
        wait_for_port("127.0.0.1", port, 1)
    assert not proc.running
    assert not port_open("127.0.0.1", port)


def test_server_process_that_dies_reports_its_log(tmp_path) -> None:
    proc = ServerProcess([sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
                         log_path=tmp_path / "log", ready=lambda: False)
    with pytest.raises(RuntimeError, match="boom"):
        proc.start()


def test_blackhole_accepts_and_never_answers() -> None:
    with BlackholeServer() as hole:
        sock = socket.create_connection(("127.0.0.1", hole.port), timeout=1)
        sock.settimeout(0.3)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert time.monotonic() - start >= 0.25
        sock.close()
