"""The oss backend against real servers on 127.0.0.1: moto standing in for OSS, a front that injects
503s and resets, a server answering with OSS's documented error bodies, a closed port and a server
that never answers."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from nydus_backend_oss.backend import OSSBackend

from nydus_core.errors import (
    AuthError,
    BlobNotFoundError,
    NydusError,
    PermissionDeniedError,
    TransientBackendError,
)
from nydus_core.testing.objstore import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    FlakyFront,
    ForwardProxy,
    MotoServer,
    shared_moto,
)
from nydus_core.testing.samples import blob_id_of, random_bytes
from nydus_core.testing.servers import BackgroundHTTPServer, BlackholeServer, free_port

MiB = 1024 * 1024
BUCKET = "oss-images"


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    server = shared_moto()
    server.create_bucket(BUCKET)
    return server


def config(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "scheme": "http", "endpoint": endpoint, "bucket_name": BUCKET, "object_prefix": "blobs/",
        "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET, **extra,
    }


@pytest.fixture
def backend(moto: MotoServer) -> Iterator[OSSBackend]:
    backend = OSSBackend(config(moto.endpoint))
    yield backend
    backend.close()


def multipart_etag(data: bytes, part_size: int) -> str:
    """The ETag of a multipart object as S3 (and moto) compute it: md5 of the parts' md5s, ``-<parts>``."""
    parts = [data[i:i + part_size] for i in range(0, len(data), part_size)]
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def test_large_blob_goes_up_in_parts_and_reads_back(backend: OSSBackend, moto: MotoServer) -> None:
    data = random_bytes(20 * MiB + 999, seed=11)
    blob_id = blob_id_of(data)
    backend.write(blob_id, io.BytesIO(data), len(data))
    head = moto.client().head_object(Bucket=BUCKET, Key=f"blobs/{blob_id}")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == multipart_etag(data, backend.multipart_chunksize)  # 3 parts of 8 MiB
    assert backend.size(blob_id) == len(data)
    assert backend.read(blob_id, 8 * MiB - 3, 6) == data[8 * MiB - 3:8 * MiB + 3]
    assert hashlib.sha256(backend.read(blob_id, 0, len(data))).hexdigest() == blob_id


def test_stream_without_size_in_parts(backend: OSSBackend, moto: MotoServer) -> None:
    class Trickle(io.RawIOBase):
        """A stream that returns at most 1 MiB per read, like a pipe."""

        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self._data.read(min(n, MiB) if n >= 0 else MiB)

    data = random_bytes(17 * MiB, seed=12)
    backend.write(blob_id_of(data), Trickle(data))
    head = moto.client().head_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(data)}")
    assert head["ETag"] == multipart_etag(data, backend.multipart_chunksize)
    assert backend.read(blob_id_of(data), 0, len(data)) == data


def test_short_multipart_stream_aborts_and_stores_nothing(backend: OSSBackend, moto: MotoServer) -> None:
    data = random_bytes(18 * MiB, seed=13)
    blob_id = blob_id_of(data)
    with pytest.raises(NydusError, match="ended after"):
        backend.write(blob_id, io.BytesIO(data[: 17 * MiB]), len(data))
    assert not backend.exists(blob_id)
    uploads = moto.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u for u in uploads if u["Key"].endswith(blob_id)] == []


def test_missing_object_and_wrong_bucket(moto: MotoServer, backend: OSSBackend) -> None:
    missing = blob_id_of(b"never stored")
    with pytest.raises(BlobNotFoundError, match=f"oss://{BUCKET}/blobs/{missing}"):
        backend.read(missing, 0, 10)
    wrong = OSSBackend(config(moto.endpoint, bucket_name="no-such-bucket"))
    with pytest.raises(BlobNotFoundError, match="bucket does not exist"):
        wrong.read(missing, 0, 10)
    assert wrong.exists(missing) is False


def test_server_down_fails_fast_and_clearly() -> None:
    port = free_port()
    backend = OSSBackend(config(f"127.0.0.1:{port}", retry_limit=2, timeout=1, connect_timeout=1))
    start = time.monotonic()
    with pytest.raises(TransientBackendError) as info:
        backend.size(blob_id_of(b"x"))
    assert time.monotonic() - start < 1 * 3 + 5  # timeout x (retry_limit + 1) + slack
    assert f"127.0.0.1:{port}" in str(info.value) and "cannot reach" in str(info.value)
    assert ACCESS_KEY_SECRET not in str(info.value)


def test_hung_server_times_out_within_bound() -> None:
    with BlackholeServer() as hole:
        backend = OSSBackend(config(hole.address, retry_limit=1, timeout=1, connect_timeout=1))
        start = time.monotonic()
        with pytest.raises(TransientBackendError, match="timed out"):
            backend.read(blob_id_of(b"x"), 0, 10)
        elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 1 * 2 + 4


@pytest.fixture
def flaky(moto: MotoServer) -> Iterator[FlakyFront]:
    with FlakyFront(moto.endpoint) as front:
        yield front


@pytest.mark.parametrize("failure", [503, 502, "reset"])
def test_transient_failures_cost_retries_then_succeed(
    flaky: FlakyFront, moto: MotoServer, failure: int | str
) -> None:
    data = random_bytes(5000, seed=14)
    moto.client().put_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(data)}", Body=data)
    backend = OSSBackend(config(flaky.endpoint, retry_limit=3))
    flaky.fail_next(2, failure)
    assert backend.read(blob_id_of(data), 100, 50) == data[100:150]
    assert flaky.failed == 2


def test_failures_beyond_retry_limit_are_transient_errors(flaky: FlakyFront, moto: MotoServer) -> None:
    data = random_bytes(500, seed=15)
    moto.client().put_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(data)}", Body=data)
    backend = OSSBackend(config(flaky.endpoint, retry_limit=1))
    flaky.fail_next(5, 503)
    with pytest.raises(TransientBackendError):
        backend.read(blob_id_of(data), 0, 10)
    assert flaky.failed == 2


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
        backend = OSSBackend(config(server.address, access_key_secret=secret))
        blob_id = code.lower()  # the server picks the error from the object name
        for call in (lambda: backend.read(blob_id, 0, 10), lambda: backend.size(blob_id)):
            with pytest.raises(expected) as info:
                call()
            text = str(info.value)
            assert code in text and blob_id in text
            assert secret not in text


def test_reads_through_the_proxy_fall_back_when_it_is_down(moto: MotoServer) -> None:
    data = random_bytes(3000, seed=16)
    moto.client().put_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(data)}", Body=data)
    with ForwardProxy() as proxy:
        backend = OSSBackend(config(moto.endpoint, proxy={"url": proxy.url, "ping_url": proxy.ping_url,
                                                          "check_interval": 0.3}))
        assert backend.read(blob_id_of(data), 0, 10) == data[:10]
        assert backend.size(blob_id_of(data)) == len(data)
        assert proxy.forwarded == {"GET": 1, "HEAD": 1}
        proxy.stop()
        assert backend.read(blob_id_of(data), 10, 10) == data[10:20]
        proxy.start()
        time.sleep(0.4)
        assert backend.read(blob_id_of(data), 20, 10) == data[20:30]
        assert proxy.total == 3
        proxy.stop()
        strict = OSSBackend(config(moto.endpoint, proxy={"url": proxy.url, "fallback": False}))
        with pytest.raises(TransientBackendError, match="proxy"):
            strict.read(blob_id_of(data), 0, 10)


def test_secret_never_logged(moto: MotoServer, caplog: pytest.LogCaptureFixture) -> None:
    """Everything logged at DEBUG (ours, oss2's, urllib3's) while writing, reading and failing."""
    secret = "Log-OssS3cret-" + "q" * 26
    caplog.set_level(logging.DEBUG)
    backend = OSSBackend(config(moto.endpoint, access_key_secret=secret, retry_limit=1))
    data = random_bytes(9 * MiB, seed=17)  # a multipart upload
    backend.write(blob_id_of(data), io.BytesIO(data), len(data))
    assert backend.read(blob_id_of(data), 0, 100) == data[:100]
    with pytest.raises(BlobNotFoundError):
        backend.size(blob_id_of(b"absent"))
    backend.close()
    assert len(caplog.records) > 5
    assert secret not in caplog.text


def test_use_http_talks_plain_http_through_the_proxy(moto: MotoServer) -> None:
    data = random_bytes(1000, seed=18)
    moto.client().put_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(data)}", Body=data)
    with ForwardProxy() as proxy:
        backend = OSSBackend(config(moto.endpoint, scheme="https",
                                    proxy={"url": proxy.url, "use_http": True, "fallback": False}))
        assert backend.read(blob_id_of(data), 5, 5) == data[5:10]
        assert proxy.forwarded == {"GET": 1}
