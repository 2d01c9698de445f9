"""Our OSS requests carry the Authorization header of Alibaba Cloud's documented V1 signature example.

Source: Alibaba Cloud OSS documentation, "Include signatures in the Authorization header" (OSS API
reference, access control; help.aliyun.com document 31951, formerly
docs.aliyun.com/#/pub/oss/api-reference/access-control&signature-header). Its worked example signs

    PUT /nelson HTTP/1.0
    Content-MD5: ODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=
    Content-Type: text/html
    Date: Thu, 17 Nov 2005 18:49:58 GMT
    Host: oss-example.oss-cn-hangzhou.aliyuncs.com
    X-OSS-Meta-Author: foo@bar.com
    X-OSS-Magic: abracadabra

with AccessKeyId ``44CF9590006BF252F707`` and AccessKeySecret
``OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV`` and gives
``Authorization: OSS 44CF9590006BF252F707:26NBxoKdsyly4EDv6inkoDft/yA=``. (Current editions of the
page mask the keys; these values are the example as it was published and as independent OSS clients
test against it.)

The request is made by the backend's own ``oss2.Bucket`` (its signer, its session) against a server
on 127.0.0.1 that records what arrives; only the clock is pinned to the example's date.
"""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from nydus_backend_oss.backend import OSSBackend
from nydus_backend_oss.sdk import import_oss2
from nydus_testkit.servers import BackgroundHTTPServer

DOC_KEY_ID = "44CF9590006BF252F707"
DOC_KEY_SECRET = "OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV"
DOC_DATE = "Thu, 17 Nov 2005 18:49:58 GMT"
DOC_AUTHORIZATION = "OSS 44CF9590006BF252F707:26NBxoKdsyly4EDv6inkoDft/yA="


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.owner.requests.append((self.command, self.path, headers))
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_GET = do_HEAD = _record


@pytest.fixture
def recorder() -> Iterator[BackgroundHTTPServer]:
    server = BackgroundHTTPServer(_Recorder)
    server.requests = []
    with server:
        yield server


def test_authorization_matches_the_documented_example(
    recorder: BackgroundHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    oss2 = import_oss2()
    monkeypatch.setattr(oss2.utils, "http_date", lambda *args: DOC_DATE)
    backend = OSSBackend({
        "scheme": "http", "endpoint": recorder.address, "bucket_name": "oss-example",
        "access_key_id": DOC_KEY_ID, "access_key_secret": DOC_KEY_SECRET,
    })
    backend.bucket().put_object("nelson", b"", headers={
        "Content-MD5": "ODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=",
        "Content-Type": "text/html",
        "X-OSS-Meta-Author": "foo@bar.com",
        "X-OSS-Magic": "abracadabra",
    })
    [(method, path, headers)] = recorder.requests
    assert (method, path) == ("PUT", "/oss-example/nelson")  # path-style: the endpoint is an IP
    assert headers["date"] == DOC_DATE
    assert headers["authorization"] == DOC_AUTHORIZATION


def test_reads_are_signed_with_the_configured_key(recorder: BackgroundHTTPServer) -> None:
    backend = OSSBackend({
        "scheme": "http", "endpoint": recorder.address, "bucket_name": "bkt", "object_prefix": "p/",
        "access_key_id": DOC_KEY_ID, "access_key_secret": DOC_KEY_SECRET,
    })
    backend.read("ab" * 32, 10, 5)
    [(method, path, headers)] = recorder.requests
    assert (method, unquote(path)) == ("GET", "/bkt/p/" + "ab" * 32)
    assert headers["range"] == "bytes=10-14"
    assert headers["authorization"].startswith(f"OSS {DOC_KEY_ID}:")
    assert DOC_KEY_SECRET not in str(headers)


def test_anonymous_requests_carry_no_authorization(recorder: BackgroundHTTPServer) -> None:
    backend = OSSBackend({"scheme": "http", "endpoint": recorder.address, "bucket_name": "bkt"})
    backend.read("cd" * 32, 0, 1)
    [(_, _, headers)] = recorder.requests
    assert "authorization" not in headers
