"""The s3 backend against real servers on 127.0.0.1: moto (plain, and with IAM auth enforced), a
front that injects 503s and resets, a closed port and a server that never answers (the tests s3 shares
with oss are in :class:`nydus_testsupport.objstore_suites.ObjectStoreServerSuite`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nydus_backend_s3.backend import S3Backend
from nydus_testkit.samples import blob_id_of, random_bytes
from nydus_testsupport.objstore import ACCESS_KEY_ID, ACCESS_KEY_SECRET, MotoServer
from nydus_testsupport.objstore_suites import ObjectStoreServerSuite

from nydus_core.errors import AuthError, PermissionDeniedError

MiB = 1024 * 1024
BUCKET = "s3-images"


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


class TestS3Server(ObjectStoreServerSuite):
    backend_cls = S3Backend
    bucket = BUCKET
    extra_config = {"region": "us-east-1"}
    min_log_records = 10

    @pytest.mark.parametrize(
        ("which", "expected"),
        [("valid", PermissionDeniedError), ("wrong-secret", AuthError), ("unknown-key", AuthError)],
    )
    def test_auth_and_permission_errors(
        self, moto_auth: tuple[MotoServer, dict[str, str]], which: str, expected: type[Exception]
    ) -> None:
        server, key = moto_auth
        key_id, secret = {
            "valid": (key["id"], key["secret"]),
            "wrong-secret": (key["id"], "not-the-secret-" + key["secret"][:8]),
            "unknown-key": ("AKIAUNKNOWNKEY000000", "some-unknown-secret"),
        }[which]
        backend = self.make(server.endpoint, access_key_id=key_id, access_key_secret=secret)
        blob_id = blob_id_of(b"data")
        for call in (lambda: backend.read(blob_id, 0, 4), lambda: backend.size(blob_id)):
            with pytest.raises(expected) as info:
                call()
            assert secret not in str(info.value)
            assert blob_id in str(info.value)

    def test_readv_and_threads_share_one_client(self, backend: S3Backend, moto: MotoServer) -> None:
        data = random_bytes(2 * MiB, seed=6)
        self.put(moto, data)
        ranges = [(0, 10), (MiB, 4096), (2 * MiB - 5, 100)]
        assert backend.readv(blob_id_of(data), ranges) == [data[o:o + n] for o, n in ranges]
        assert len(backend._clients) == 1
