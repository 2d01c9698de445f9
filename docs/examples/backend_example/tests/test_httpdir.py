"""The example backend against a real HTTP server on 127.0.0.1, through nydus-testkit's BackendContract."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nydus_backend_httpdir import HttpDirBackend
from nydus_testkit import BackendContract
from nydus_testkit.rangeserver import RangeHTTPServer

from nydus_core.errors import ConfigError, TransientBackendError


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RangeHTTPServer]:
    with RangeHTTPServer(tmp_path) as srv:  # serves tmp_path's files on 127.0.0.1, a free port
        yield srv


class TestHttpDir(BackendContract):
    writable = False  # read-only: the contract checks that write() says so

    @pytest.fixture
    def backend(self, server: RangeHTTPServer) -> HttpDirBackend:
        return HttpDirBackend({"url": server.url + "/"})

    @pytest.fixture
    def put_blob(self, server: RangeHTTPServer) -> Callable[[str, bytes], None]:
        def put(blob_id: str, data: bytes) -> None:
            (server.root / blob_id).write_bytes(data)  # where the backend reads, without using it

        return put


def test_reads_are_single_ranged_requests(server: RangeHTTPServer) -> None:
    (server.root / ("ab" * 32)).write_bytes(bytes(range(256)) * 16)
    backend = HttpDirBackend({"url": server.url})
    assert backend.read("ab" * 32, 100, 50) == (bytes(range(256)) * 16)[100:150]
    assert [(r.method, r.range, r.status) for r in server.requests] == [("GET", "bytes=100-149", 206)]


def test_server_errors_are_transient(server: RangeHTTPServer) -> None:
    (server.root / ("cd" * 32)).write_bytes(b"x" * 10)
    backend = HttpDirBackend({"url": server.url})
    server.fail_next(1, status=503)
    with pytest.raises(TransientBackendError, match="HTTP 503"):
        backend.size("cd" * 32)
    assert backend.size("cd" * 32) == 10  # the next request is answered again


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^url: "):
        HttpDirBackend({"url": "ftp://example.org/blobs"})
    with pytest.raises(ConfigError, match=r"^timeout: "):
        HttpDirBackend({"url": "http://127.0.0.1/", "timeout": 0})


def test_unknown_key_is_a_warning_with_a_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        HttpDirBackend({"url": "http://127.0.0.1/", "timout": 5})
    assert "timout: unknown key, ignored (did you mean 'timeout'?)" in caplog.text


def test_server_down_is_transient(server: RangeHTTPServer) -> None:
    backend = HttpDirBackend({"url": server.url, "timeout": 2})
    server.stop()
    with pytest.raises(TransientBackendError, match="httpdir: blob"):
        backend.size("ab" * 32)
