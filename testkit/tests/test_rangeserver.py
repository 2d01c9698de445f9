"""nydus_testkit.rangeserver: what a backend's HTTP client sees, checked with http.client and urllib."""

from __future__ import annotations

import http.client
import random
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from nydus_testkit.rangeserver import RangeHTTPServer, RecordedRequest, parse_range

DATA = random.Random(3).randbytes(100_000)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RangeHTTPServer]:
    (tmp_path / "blob").write_bytes(DATA)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "with space").write_bytes(b"nested")
    (tmp_path.parent / f"{tmp_path.name}-secret").write_bytes(b"outside the root")
    with RangeHTTPServer(tmp_path) as srv:
        yield srv


def request(server: RangeHTTPServer, method: str, path: str, headers: dict[str, str] | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, dict[str, str], bytes]:
    own = conn is None
    c = conn or http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        resp = c.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        if own:
            c.close()


def test_head_gives_size_and_no_body(server: RangeHTTPServer) -> None:
    status, headers, body = request(server, "HEAD", "/blob", {"Range": "bytes=0-9"})
    assert (status, headers["content-length"], body) == (200, "100000", b"")
    assert headers["accept-ranges"] == "bytes"


def test_get_whole_file(server: RangeHTTPServer) -> None:
    with urllib.request.urlopen(server.url_for("blob"), timeout=10) as resp:
        assert resp.status == 200 and resp.read() == DATA


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=0-0", 0, 0),
    ("bytes=10-4095", 10, 4095),
    ("bytes=99990-", 99990, 99999),
    ("bytes=99990-200000", 99990, 99999),  # clipped to the end
    ("bytes=-16", 99984, 99999),  # the last 16 bytes
    ("bytes=-500000", 0, 99999),
])
def test_ranges_answer_206(server: RangeHTTPServer, header: str, start: int, end: int) -> None:
    status, headers, body = request(server, "GET", "/blob", {"Range": header})
    assert status == 206
    assert headers["content-range"] == f"bytes {start}-{end}/100000"
    assert body == DATA[start:end + 1] and headers["content-length"] == str(end + 1 - start)


@pytest.mark.parametrize(("path", "header"), [("/blob", "bytes=100000-"), ("/blob", "bytes=-0"),
                                              ("/empty", "bytes=0-10")])
def test_unsatisfiable_range_is_416(server: RangeHTTPServer, path: str, header: str) -> None:
    status, headers, body = request(server, "GET", path, {"Range": header})
    size = 100000 if path == "/blob" else 0
    assert (status, headers["content-range"], body) == (416, f"bytes */{size}", b"")


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "items=0-1", "bytes=9-3", "bytes=-"])
def test_range_not_understood_serves_the_whole_file(server: RangeHTTPServer, header: str) -> None:
    status, _headers, body = request(server, "GET", "/blob", {"Range": header})
    assert status == 200 and body == DATA


@pytest.mark.parametrize("path", ["/missing", "/sub", "/", "/../blob", "/sub/../../blob", "/%2e%2e/x",
                                  "/..%2f" + "x"])
def test_not_a_file_under_the_root_is_404(server: RangeHTTPServer, path: str) -> None:
    assert request(server, "GET", path)[0] == 404
    assert request(server, "HEAD", path)[0] == 404


def test_outside_the_root_is_404(server: RangeHTTPServer) -> None:
    secret = f"/../{server.root.name}-secret"
    assert (server.root.parent / secret.removeprefix("/../")).exists()
    assert request(server, "GET", secret)[0] == 404


def test_quoted_names_and_query_strings(server: RangeHTTPServer) -> None:
    assert request(server, "GET", "/sub/with%20space?x=1")[2] == b"nested"


def test_other_methods_are_405(server: RangeHTTPServer) -> None:
    status, headers, _ = request(server, "PUT", "/blob")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_keep_alive_serves_many_requests_on_one_connection(server: RangeHTTPServer) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        for off in range(0, 50_000, 10_000):
            status, _, body = request(server, "GET", "/blob", {"Range": f"bytes={off}-{off + 99}"}, conn)
            assert status == 206 and body == DATA[off:off + 100]
        assert request(server, "GET", "/missing", conn=conn)[0] == 404
        assert request(server, "HEAD", "/blob", conn=conn)[0] == 200
        assert request(server, "GET", "/blob", {"Range": "bytes=0-3"}, conn)[2] == DATA[:4]
    finally:
        conn.close()


def test_random_ranges_match_slices(server: RangeHTTPServer) -> None:
    rnd = random.Random(11)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        for _ in range(50):
            start = rnd.randrange(len(DATA))
            end = start + rnd.randrange(1, 70_000)
            status, _, body = request(server, "GET", "/blob", {"Range": f"bytes={start}-{end}"}, conn)
            assert status == 206 and body == DATA[start:end + 1]
    finally:
        conn.close()


def test_fail_next_then_recover(server: RangeHTTPServer) -> None:
    server.fail_next(2)
    server.fail_next(1, status=500)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url_for("blob"), timeout=10)
    assert err.value.code == 503
    assert request(server, "HEAD", "/blob")[0] == 503
    assert request(server, "GET", "/blob", {"Range": "bytes=0-1"})[0] == 500
    assert request(server, "GET", "/blob", {"Range": "bytes=0-1"})[:3:2] == (206, DATA[:2])
    assert [r.status for r in server.requests] == [503, 503, 500, 206]
    with pytest.raises(ValueError, match="not an HTTP error status"):
        server.fail_next(1, status=200)


def test_reset_next_drops_the_connection(server: RangeHTTPServer) -> None:
    server.reset_next(1)
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        request(server, "GET", "/blob")
    assert request(server, "GET", "/blob", {"Range": "bytes=5-6"})[2] == DATA[5:7]
    server.reset_next(3)
    server.clear_faults()
    assert request(server, "HEAD", "/blob")[0] == 200


def test_requests_are_recorded(server: RangeHTTPServer) -> None:
    request(server, "HEAD", "/blob")
    request(server, "GET", "/blob", {"Range": "bytes=1-2"})
    request(server, "GET", "/nope")
    assert server.requests == [
        RecordedRequest("HEAD", "/blob", None, 200),
        RecordedRequest("GET", "/blob", "bytes=1-2", 206),
        RecordedRequest("GET", "/nope", None, 404),
    ]
    server.reset_requests()
    assert server.requests == []


def test_stop_and_start_on_the_same_port(server: RangeHTTPServer) -> None:
    port = server.port
    server.stop()
    with pytest.raises(OSError):
        request(server, "HEAD", "/blob")
    server.start()
    assert server.port == port and request(server, "HEAD", "/blob")[0] == 200


def test_file_changes_are_seen(server: RangeHTTPServer) -> None:
    (server.root / "new").write_bytes(b"abc")
    assert request(server, "GET", "/new", {"Range": "bytes=1-"})[2] == b"bc"
    (server.root / "new").unlink()
    assert request(server, "GET", "/new")[0] == 404


def test_parse_range() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 4)
    assert parse_range("bytes=2-", 10) == (2, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=5-1", 10) is None
