"""The s3 backend against real servers on 127.0.0.1: moto (plain, and with IAM auth enforced), a
front that injects 503s and resets, a closed port and a server that never answers."""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nydus_backend_s3.backend import S3Backend

from nydus_core.errors import (
    AuthError,
    BlobNotFoundError,
    NydusError,
    PermissionDeniedError,
    TransientBackendError,
)
from nydus_core.testing.objstore import ACCESS_KEY_ID, ACCESS_KEY_SECRET, FlakyFront, MotoServer, shared_moto
from nydus_core.testing.samples import blob_id_of, random_bytes
from nydus_core.testing.servers import BlackholeServer, free_port

MiB = 1024 * 1024
BUCKET = "s3-images"


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    server = shared_moto()
    server.create_bucket(BUCKET)
    return server


def config(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "scheme": "http", "endpoint": endpoint, "region": "us-east-1", "bucket_name": BUCKET,
        "object_prefix": "blobs/", "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET,
        **extra,
    }


@pytest.fixture
def backend(moto: MotoServer) -> Iterator[S3Backend]:
    backend = S3Backend(config(moto.endpoint))
    yield backend
    backend.close()


def multipart_etag(data: bytes, part_size: int) -> str:
    """S3's ETag of a multipart object: md5 of the parts' md5s, then ``-<parts>``."""
    parts = [data[i:i + part_size] for i in range(0, len(data), part_size)]
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def test_large_blob_goes_up_in_parts_and_reads_back(backend: S3Backend, moto: MotoServer) -> None:
    data = random_bytes(20 * MiB + 12345, seed=1)
    blob_id = blob_id_of(data)
    backend.write(blob_id, io.BytesIO(data), len(data))
    head = moto.client().head_object(Bucket=BUCKET, Key=f"blobs/{blob_id}")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == multipart_etag(data, backend.multipart_chunksize)  # 3 parts of 8 MiB
    assert backend.size(blob_id) == len(data)
    for offset, length in ((0, 4096), (8 * MiB - 10, 20), (len(data) - 100, 1000)):
        assert backend.read(blob_id, offset, length) == data[offset:offset + length]
    assert hashlib.sha256(backend.read(blob_id, 0, len(data))).hexdigest() == blob_id


def test_small_blob_is_one_put(backend: S3Backend, moto: MotoServer) -> None:
    data = random_bytes(1000, seed=2)
    backend.write(blob_id_of(data), data)
    etag = moto.client().head_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(data)}")["ETag"]
    assert etag == f'"{hashlib.md5(data).hexdigest()}"'


def test_short_multipart_stream_aborts_and_stores_nothing(backend: S3Backend, moto: MotoServer) -> None:
    data = random_bytes(18 * MiB, seed=3)
    blob_id = blob_id_of(data)
    with pytest.raises(NydusError) as info:
        backend.write(blob_id, io.BytesIO(data[: 17 * MiB]), len(data))
    assert "ended after" in str(info.value)
    assert not backend.exists(blob_id)
    uploads = moto.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u for u in uploads if u["Key"].endswith(blob_id)] == []


def test_missing_object_and_wrong_bucket(moto: MotoServer, backend: S3Backend) -> None:
    missing = blob_id_of(b"never stored")
    with pytest.raises(BlobNotFoundError, match=f"s3://{BUCKET}/blobs/{missing}"):
        backend.read(missing, 0, 10)
    wrong = S3Backend(config(moto.endpoint, bucket_name="no-such-bucket"))
    with pytest.raises(BlobNotFoundError, match="bucket does not exist"):
        wrong.read(missing, 0, 10)
    with pytest.raises(BlobNotFoundError):
        wrong.size(missing)
    assert wrong.exists(missing) is False


def test_server_down_fails_fast_and_clearly() -> None:
    port = free_port()  # nothing listens here
    backend = S3Backend(config(f"127.0.0.1:{port}", retry_limit=2, timeout=1, connect_timeout=1))
    start = time.monotonic()
    with pytest.raises(TransientBackendError) as info:
        backend.read(blob_id_of(b"x"), 0, 10)
    assert time.monotonic() - start < 1 * 3 + 5  # timeout x (retry_limit + 1) + slack
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text and "cannot reach" in text
    assert ACCESS_KEY_SECRET not in text and "\n" not in text


def test_hung_server_times_out_within_bound() -> None:
    with BlackholeServer() as hole:
        backend = S3Backend(config(hole.address, retry_limit=1, timeout=1, connect_timeout=1))
        start = time.monotonic()
        with pytest.raises(TransientBackendError, match="timed out"):
            backend.read(blob_id_of(b"x"), 0, 10)
        elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 1 * 2 + 4  # timeout x (retry_limit + 1) + slack (backoff)


@pytest.fixture
def flaky(moto: MotoServer) -> Iterator[FlakyFront]:
    with FlakyFront(moto.endpoint) as front:
        yield front


@pytest.mark.parametrize("failure", [503, 500, "reset"])
def test_transient_failures_cost_retries_then_succeed(
    flaky: FlakyFront, moto: MotoServer, failure: int | str
) -> None:
    data = random_bytes(5000, seed=4)
    moto.client().put_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(data)}", Body=data)
    backend = S3Backend(config(flaky.endpoint, retry_limit=3))
    flaky.fail_next(2, failure)
    assert backend.read(blob_id_of(data), 10, 100) == data[10:110]
    assert flaky.failed == 2


def test_failures_beyond_retry_limit_are_transient_errors(flaky: FlakyFront, moto: MotoServer) -> None:
    data = random_bytes(500, seed=5)
    moto.client().put_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(data)}", Body=data)
    backend = S3Backend(config(flaky.endpoint, retry_limit=1))
    flaky.fail_next(5, 503)
    with pytest.raises(TransientBackendError, match="ServiceUnavailable"):
        backend.read(blob_id_of(data), 0, 10)
    assert flaky.failed == 2  # the first try and one retry


@pytest.fixture(scope="module")
def moto_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MotoServer, dict[str, str]]]:
    """moto with IAM auth enforced after 4 setup actions: a user with keys but no S3 permission."""
    import boto3

    server = MotoServer(log_dir=tmp_path_factory.mktemp("moto-auth"))
    server.process.env = {**(server.process.env or {}), "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    with server:
        iam = boto3.client("iam", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=ACCESS_KEY_SECRET)
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(b'data')}", Body=b"data")
        yield server, {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


@pytest.mark.parametrize(
    ("which", "expected"),
    [("valid", PermissionDeniedError), ("wrong-secret", AuthError), ("unknown-key", AuthError)],
)
def test_auth_and_permission_errors(
    moto_auth: tuple[MotoServer, dict[str, str]], which: str, expected: type[Exception]
) -> None:
    server, key = moto_auth
    key_id, secret = {
        "valid": (key["id"], key["secret"]),
        "wrong-secret": (key["id"], "not-the-secret-" + key["secret"][:8]),
        "unknown-key": ("AKIAUNKNOWNKEY000000", "some-unknown-secret"),
    }[which]
    backend = S3Backend(config(server.endpoint, access_key_id=key_id, access_key_secret=secret))
    blob_id = blob_id_of(b"data")
    for call in (lambda: backend.read(blob_id, 0, 4), lambda: backend.size(blob_id)):
        with pytest.raises(expected) as info:
            call()
        assert secret not in str(info.value)
        assert blob_id in str(info.value)


def test_secret_never_in_error_text(moto: MotoServer, tmp_path: Path) -> None:
    secret = "S3cr3t-" + "k" * 33
    cases = [
        S3Backend(config(moto.endpoint, access_key_secret=secret, bucket_name="missing-bucket")),
        S3Backend(config(f"127.0.0.1:{free_port()}", access_key_secret=secret)),
        S3Backend(config(moto.endpoint, access_key_secret=secret,
                         proxy={"url": f"http://user:{secret}@127.0.0.1:{free_port()}", "fallback": False})),
    ]
    for backend in cases:
        with pytest.raises(NydusError) as info:
            backend.read(blob_id_of(b"y"), 0, 1)
        assert secret not in str(info.value)
        assert secret not in repr(info.value.args)


def test_readv_and_threads_share_one_client(backend: S3Backend, moto: MotoServer) -> None:
    data = random_bytes(2 * MiB, seed=6)
    moto.client().put_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(data)}", Body=data)
    ranges = [(0, 10), (MiB, 4096), (2 * MiB - 5, 100)]
    assert backend.readv(blob_id_of(data), ranges) == [data[o:o + n] for o, n in ranges]
    assert len(backend._clients) == 1


def test_secret_never_logged(moto: MotoServer, caplog: pytest.LogCaptureFixture) -> None:
    """Everything logged at DEBUG (ours, boto3's, urllib3's) while writing, reading and failing."""
    secret = "Log-S3cret-" + "q" * 29
    caplog.set_level(logging.DEBUG)
    backend = S3Backend(config(moto.endpoint, access_key_secret=secret, retry_limit=1))
    data = random_bytes(9 * MiB, seed=8)  # a multipart upload
    backend.write(blob_id_of(data), io.BytesIO(data), len(data))
    assert backend.read(blob_id_of(data), 0, 100) == data[:100]
    with pytest.raises(BlobNotFoundError):
        backend.size(blob_id_of(b"absent"))
    backend.close()
    assert len(caplog.records) > 10
    assert secret not in caplog.text


def test_sha256_prefixed_ids_and_bad_ids(backend: S3Backend, moto: MotoServer) -> None:
    data = b"prefixed id"
    moto.client().put_object(Bucket=BUCKET, Key=f"blobs/{blob_id_of(data)}", Body=data)
    assert backend.read(f"sha256:{blob_id_of(data)}", 0, 100) == data
    with pytest.raises(BlobNotFoundError):
        backend.read("/etc/passwd", 0, 1)
