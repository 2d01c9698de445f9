"""The example backend against a real HTTP server on 127.0.0.1, through nydus-testkit's BackendContract."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nydus_backend_httpdir import HttpDirBackend
from nydus_testkit import BackendContract

from nydus_core.errors import ConfigError, TransientBackendError


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files of ``server.root`` by name, honouring single ``Range: bytes=a-b`` requests."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _file(self) -> Path | None:
        path = self.server.root / self.path.lstrip("/")  # type: ignore[attr-defined]
        return path if path.is_file() else None

    def do_HEAD(self) -> None:
        path = self._file()
        self.send_response(200 if path else 404)
        self.send_header("Content-Length", str(path.stat().st_size if path else 0))
        self.end_headers()

    def do_GET(self) -> None:
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if match:
            start, end = int(match[1]), min(int(match[2]), size - 1)
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        with path.open("rb") as f:
            f.seek(start)
            body = f.read(end + 1 - start)
        self.send_response(206 if match else 200)
        if match:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.daemon_threads = True
    srv.root = tmp_path  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


class TestHttpDir(BackendContract):
    writable = False  # read-only: the contract checks that write() says so

    @pytest.fixture
    def backend(self, server: http.server.ThreadingHTTPServer) -> HttpDirBackend:
        return HttpDirBackend({"url": f"http://127.0.0.1:{server.server_port}/"})

    @pytest.fixture
    def put_blob(self, server: http.server.ThreadingHTTPServer) -> Callable[[str, bytes], None]:
        return lambda blob_id, data: (server.root / blob_id).write_bytes(data)  # type: ignore[attr-defined]


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^url: "):
        HttpDirBackend({"url": "ftp://example.org/blobs"})
    with pytest.raises(ConfigError, match=r"^timeout: "):
        HttpDirBackend({"url": "http://127.0.0.1/", "timeout": 0})


def test_server_down_is_transient(server: http.server.ThreadingHTTPServer) -> None:
    backend = HttpDirBackend({"url": f"http://127.0.0.1:{server.server_port}", "timeout": 2})
    server.shutdown()
    server.server_close()
    with pytest.raises(TransientBackendError, match="httpdir: blob"):
        backend.size("ab" * 32)
