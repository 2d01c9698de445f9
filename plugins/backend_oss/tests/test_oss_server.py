"""The oss backend against real servers on 127.0.0.1: moto standing in for OSS, a front that injects
503s and resets, a server answering with OSS's documented error bodies, a closed port and a server
that never answers (the tests oss shares with s3 are in
:class:`nydus_testsupport.objstore_suites.ObjectStoreServerSuite`)."""

from __future__ import annotations

import base64
import http.server
from typing import Any

import pytest
from nydus_backend_oss.backend import OSSBackend
from nydus_testkit.servers import BackgroundHTTPServer
from nydus_testsupport.objstore_suites import ObjectStoreServerSuite

from nydus_core.errors import (
    AuthError,
    BlobNotFoundError,
    PermissionDeniedError,
    TransientBackendError,
)

BUCKET = "oss-images"


class TestOSSServer(ObjectStoreServerSuite):
    backend_cls = OSSBackend
    bucket = BUCKET


# OSS's error answers (OSS API reference, "Error responses"): an XML <Error> body for GET, and for
# HEAD (which has no body) the same XML base64-encoded in the x-oss-err header.
OSS_ERRORS = {
    "InvalidAccessKeyId": (403, "The OSS Access Key Id you provided does not exist in our records."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature "
                                   "you provided."),
    "SecurityTokenExpired": (403, "The security token you provided has expired."),
    "AccessDenied": (403, "You have no right to access this object because of bucket acl."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
}


class _OssErrors(http.server.BaseHTTPRequestHandler):
    """Answers ``/bucket/<prefix><CODE>`` with OSS's error for CODE."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _error(self) -> None:
        code = self.path.rsplit("/", 1)[-1].rsplit("%2F", 1)[-1].lower()
        name = next(n for n in OSS_ERRORS if n.lower() in code)
        status, message = OSS_ERRORS[name]
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>{name}</Code>\n'
            f"  <Message>{message}</Message>\n  <RequestId>5C3D9175B6FC201293AD****</RequestId>\n"
            f"  <HostId>{BUCKET}.oss-cn-hangzhou.aliyuncs.com</HostId>\n</Error>\n"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-oss-request-id", "5C3D9175B6FC201293AD****")
        if self.command == "HEAD":
            self.send_header("x-oss-err", base64.b64encode(body).decode())
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = _error


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("InvalidAccessKeyId", AuthError),
        ("SignatureDoesNotMatch", AuthError),
        ("SecurityTokenExpired", AuthError),
        ("AccessDenied", PermissionDeniedError),
        ("NoSuchKey", BlobNotFoundError),
        ("InternalError", TransientBackendError),
    ],
)
def test_oss_error_answers_map_to_their_kind(code: str, expected: type[Exception]) -> None:
    secret = "OssSecret-" + "z" * 30
    with BackgroundHTTPServer(_OssErrors) as server:
        backend = TestOSSServer().make(server.address, access_key_secret=secret)
        blob_id = code.lower()  # the server picks the error from the object name
        for call in (lambda: backend.read(blob_id, 0, 10), lambda: backend.size(blob_id)):
            with pytest.raises(expected) as info:
                call()
            text = str(info.value)
            assert code in text and blob_id in text
            assert secret not in text


def test_moto_routes_every_oss_signature_to_s3() -> None:
    """An OSS signature with four ``/`` once made moto guess a service from it and answer 500."""
    import urllib.request

    from nydus_testsupport.objstore import shared_moto

    moto = shared_moto()
    moto.create_bucket("oss-signatures")
    moto.client().put_object(Bucket="oss-signatures", Key="k", Body=b"body")
    req = urllib.request.Request(f"{moto.url}/oss-signatures/k",
                                 headers={"Authorization": "OSS key-id:ab/cd/ef/gh/ijklmnopqrstuvwxyz="})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200 and resp.read() == b"body"
