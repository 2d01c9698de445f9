"""A ranged HTTP/1.1 file server on 127.0.0.1, for testing backends that read blobs over HTTP.

:class:`RangeHTTPServer` serves the regular files of a directory by name (``GET /<name>``), the way
an object store or a static web server does::

    from nydus_testkit.rangeserver import RangeHTTPServer

    @pytest.fixture
    def server(tmp_path):
        with RangeHTTPServer(tmp_path) as srv:   # port 0: a free port is picked
            yield srv

    def test_read(server):
        (server.root / "blob").write_bytes(b"0123456789")
        backend = MyBackend({"url": server.url + "/"})
        assert backend.read("blob", 2, 3) == b"234"
        assert server.requests[-1].range == "bytes=2-4"

What it answers:

- ``GET`` with ``Range: bytes=A-B``, ``bytes=A-`` or ``bytes=-N`` (one range): ``206 Partial
  Content`` with ``Content-Range: bytes A-B/SIZE``; a range starting at or past the end: ``416``
  with ``Content-Range: bytes */SIZE``. Without ``Range`` (or with one it does not understand, such
  as several ranges, which RFC 9110 lets a server ignore): ``200`` and the whole file.
- ``HEAD``: ``200`` with ``Content-Length`` and ``Accept-Ranges: bytes``, no body.
- A name that is not a regular file directly or below the root (``..`` included): ``404``; any
  other method: ``405``.
- Every response has ``Content-Length``; connections are kept alive (HTTP/1.1).

Fault injection, for retry and error-mapping tests: :meth:`~RangeHTTPServer.fail_next` answers the
next ``n`` requests with an error status (``503`` by default) and :meth:`~RangeHTTPServer.reset_next`
drops the next ``n`` connections without answering (a TCP reset). :attr:`~RangeHTTPServer.requests`
records every request (method, path, ``Range`` header, status answered), so a test can check what
a backend fetched. :meth:`~RangeHTTPServer.stop` then :meth:`~RangeHTTPServer.start` brings the
server back on the same port (a server that went away and came back).
"""

from __future__ import annotations

import http.server
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .servers import LOCALHOST, BackgroundHTTPServer, reset_connection, serving

__all__ = ["RangeHTTPServer", "RecordedRequest", "parse_range"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, and the status it answered (0: connection reset)."""

    method: str
    path: str
    range: str | None
    status: int


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """Return ``(start, end)`` (inclusive) of a single ``bytes=`` range over ``size`` bytes, ``None``
    when the header is absent or not understood (serve the whole file), or ``"unsatisfiable"``."""
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m[1] and not m[2]):
        return None
    if not m[1]:  # bytes=-N: the last N bytes
        n = int(m[2])
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(m[1])
    if m[2] and int(m[2]) < start:
        return None  # syntactically invalid: ignored, as RFC 9110 says
    if start >= size:
        return "unsatisfiable"
    end = int(m[2]) if m[2] else size - 1
    return start, min(end, size - 1)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nydus-testkit-rangeserver"

    @property
    def _owner(self) -> RangeHTTPServer:
        owner = serving(self)
        assert isinstance(owner, RangeHTTPServer)
        return owner

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _file(self) -> Path | None:
        root = self._owner.root.resolve()
        name = unquote(urlsplit(self.path).path).lstrip("/")
        if not name:
            return None
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, method: str) -> None:
        owner = self._owner
        range_header = self.headers.get("Range")
        fault = owner._take_fault()
        if fault is not None:
            owner._record(method, self.path, range_header, fault)
            if fault == 0:
                reset_connection(self)
            else:
                self._empty(fault)
            return
        if method not in ("GET", "HEAD"):
            owner._record(method, self.path, range_header, 405)
            self._empty(405, {"Allow": "GET, HEAD"})
            return
        path = self._file()
        if path is None:
            owner._record(method, self.path, range_header, 404)
            self._empty(404)
            return
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            span = parse_range(range_header, size) if method == "GET" else None
            if span == "unsatisfiable":
                owner._record(method, self.path, range_header, 416)
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
            start, end = span if isinstance(span, tuple) else (0, size - 1)
            status = 206 if isinstance(span, tuple) else 200
            owner._record(method, self.path, range_header, status)
            self.send_response(status)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end + 1 - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if method == "HEAD":
                return
            f.seek(start)
            left = end + 1 - start
            while left > 0:
                data = f.read(min(left, _CHUNK))
                if not data:
                    break
                self.wfile.write(data)
                left -= len(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


class RangeHTTPServer(BackgroundHTTPServer):
    """Serve the files under ``root`` over HTTP/1.1 from a thread (see the module docstring).

    Use it as a context manager or call :meth:`start` / :meth:`stop`. ``port=0`` picks a free port
    at the first start; :attr:`url` is ``http://127.0.0.1:<port>``.
    """

    def __init__(self, root: str | os.PathLike[str], *, host: str = LOCALHOST, port: int = 0) -> None:
        super().__init__(_Handler, host=host, port=port)
        self.root = Path(root)
        self._lock = threading.Lock()
        self._faults: list[int] = []
        self._requests: list[RecordedRequest] = []

    def url_for(self, name: str) -> str:
        """Return the URL of the file ``name`` (relative to :attr:`root`)."""
        return f"{self.url}/{name.lstrip('/')}"

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status`` and an empty body."""
        if not 400 <= status <= 599:
            raise ValueError(f"fail_next: {status} is not an HTTP error status")
        with self._lock:
            self._faults.extend([status] * n)

    def reset_next(self, n: int) -> None:
        """Drop the next ``n`` connections without answering (the client sees a connection reset)."""
        with self._lock:
            self._faults.extend([0] * n)

    def clear_faults(self) -> None:
        """Forget faults that have not been used yet."""
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def _take_fault(self) -> int | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _record(self, method: str, path: str, range_header: str | None, status: int) -> None:
        with self._lock:
            self._requests.append(RecordedRequest(method, path, range_header, status))

    def __enter__(self) -> RangeHTTPServer:
        self.start()
        return self
