"""Test suites every object-store backend (s3, oss) passes against real servers on 127.0.0.1.

A plugin's test module subclasses each suite and sets the class attributes of :class:`ObjectStoreCase`
(``backend_cls``, ``bucket``, ``extra_config``); the suites build configs, start moto and the fault
servers of :mod:`nydus_testsupport.objstore`, and check behaviour both backends promise:

- :class:`ObjectStoreConfigSuite`: upstream's keys and defaults, a ConfigError naming each bad key,
  no secret in errors or ``repr``, CA files merged, unknown keys warned about.
- :class:`ObjectStoreContract`: :class:`~nydus_testkit.contracts.BackendContract` on moto.
- :class:`ObjectStoreServerSuite`: multipart uploads, missing objects and buckets, a closed port, a
  hung server, injected 5xx and resets, secrets kept out of errors and logs, blob id forms.
- :class:`ObjectStoreProxySuite`: the Dragonfly ``proxy`` block (fallback, recovery, ``use_http``).
- :class:`NydusCatSuite`: ``nydus cat`` reads every file of a built image through the backend.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from nydus_testkit.cli import clean_env
from nydus_testkit.contracts import BackendContract
from nydus_testkit.samples import blob_id_of, payload, random_bytes
from nydus_testkit.servers import BlackholeServer, free_port, wait_until

from nydus_core.errors import BlobNotFoundError, ConfigError, NydusError, TransientBackendError
from nydus_core.interfaces import Backend

from .objstore import ACCESS_KEY_ID, ACCESS_KEY_SECRET, FlakyFront, ForwardProxy, MotoServer, shared_moto
from .storage_helpers import build_image

__all__ = [
    "NydusCatSuite",
    "ObjectStoreConfigSuite",
    "ObjectStoreCase",
    "ObjectStoreContract",
    "ObjectStoreProxySuite",
    "ObjectStoreServerSuite",
    "multipart_etag",
]

MiB = 1024 * 1024
_prefixes = itertools.count()


def multipart_etag(data: bytes, part_size: int) -> str:
    """The ETag of a multipart object as S3 (and moto) compute it: md5 of the parts' md5s, ``-<parts>``."""
    parts = [data[i:i + part_size] for i in range(0, len(data), part_size)]
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


class ObjectStoreCase:
    """What a suite needs to know about the backend under test (set these in the subclass)."""

    #: The backend class (``S3Backend``, ``OSSBackend``); its ``name`` is the config's ``type``.
    backend_cls: ClassVar[type[Backend]]
    #: The moto bucket the suite's objects go in (one per suite: the moto server is shared).
    bucket: ClassVar[str]
    #: Keys every config of this backend carries besides the shared ones (e.g. s3's ``region``).
    extra_config: ClassVar[dict[str, Any]] = {}
    #: The ``object_prefix`` of :meth:`config`.
    object_prefix: ClassVar[str] = "blobs/"

    @pytest.fixture(scope="class")
    @classmethod
    def moto(cls) -> MotoServer:
        """The shared moto server, with :attr:`bucket` created."""
        server = shared_moto()
        server.create_bucket(cls.bucket)
        return server

    def config(self, endpoint: str, **extra: Any) -> dict[str, Any]:
        """A config for ``endpoint`` (``host:port``, plain http) with the test credentials."""
        return {
            "scheme": "http", "endpoint": endpoint, **self.extra_config, "bucket_name": self.bucket,
            "object_prefix": self.object_prefix, "access_key_id": ACCESS_KEY_ID,
            "access_key_secret": ACCESS_KEY_SECRET, **extra,
        }

    def make(self, endpoint: str, **extra: Any) -> Any:
        """A backend for ``endpoint`` (see :meth:`config`)."""
        return self.backend_cls(self.config(endpoint, **extra))

    @classmethod
    def put(cls, moto: MotoServer, data: bytes) -> str:
        """Store ``data`` under :attr:`object_prefix` with plain boto3; return its blob id."""
        blob_id = blob_id_of(data)
        moto.client().put_object(Bucket=cls.bucket, Key=cls.object_prefix + blob_id, Body=data)
        return blob_id


class ObjectStoreConfigSuite:
    """The config keys s3 and oss share: upstream's names and defaults, and a ConfigError naming each
    bad key. Set ``backend_cls`` and ``base`` (a minimal valid config)."""

    backend_cls: ClassVar[type[Backend]]
    base: ClassVar[dict[str, Any]]

    def test_shared_defaults_are_upstreams(self) -> None:
        cfg = self.backend_cls.validate_config(self.base)
        assert cfg["scheme"] == "https"
        assert cfg["object_prefix"] == ""
        assert cfg["timeout"] == 5 and cfg["connect_timeout"] == 5 and cfg["retry_limit"] == 0
        assert cfg["skip_verify"] is False and cfg["ca_cert_files"] == []
        assert cfg["proxy"] == {
            "url": "", "ping_url": "", "fallback": True, "check_interval": 5, "use_http": False,
            "check_pause_elapsed": 300,
        }

    @pytest.mark.parametrize(
        ("change", "key"),
        [
            ({"bucket_name": ""}, "bucket_name"),
            ({"bucket_name": None}, "bucket_name"),
            ({"bucket_name": "a/b"}, "bucket_name"),
            ({"endpoint": "https://s3.example.com"}, "endpoint"),
            ({"endpoint": "s3.example.com/path"}, "endpoint"),
            ({"endpoint": 9000}, "endpoint"),
            ({"scheme": "ftp"}, "scheme"),
            ({"scheme": "s3"}, "scheme"),
            ({"timeout": "5"}, "timeout"),
            ({"timeout": 0}, "timeout"),
            ({"timeout": None}, "timeout"),
            ({"connect_timeout": -1}, "connect_timeout"),
            ({"retry_limit": 1.5}, "retry_limit"),
            ({"retry_limit": -1}, "retry_limit"),
            ({"retry_limit": "3"}, "retry_limit"),
            ({"skip_verify": "yes"}, "skip_verify"),
            ({"skip_verify": 1}, "skip_verify"),
            ({"ca_cert_files": ["/nonexistent/ca.pem"]}, "ca_cert_files"),
            ({"ca_cert_files": 3}, "ca_cert_files"),
            ({"access_key_id": "id-only"}, "access_key_secret"),
            ({"access_key_secret": "secret-only"}, "access_key_id"),
            ({"proxy": "http://proxy"}, "proxy"),
            ({"proxy": {"url": "proxy:65001"}}, "proxy.url"),
            ({"proxy": {"url": "ftp://x"}}, "proxy.url"),
            ({"proxy": {"url": "http://p:1", "fallback": "no"}}, "proxy.fallback"),
            ({"proxy": {"url": "http://p:1", "check_interval": "5s"}}, "proxy.check_interval"),
            ({"proxy": {"url": "http://p:1", "check_interval": 0}}, "proxy.check_interval"),
            ({"proxy": {"dragonfly_scheduler_endpoint": "http://s:8002"}},
             "proxy.dragonfly_scheduler_endpoint"),
        ],
    )
    def test_bad_shared_values_name_their_key(self, change: dict[str, Any], key: str) -> None:
        with pytest.raises(ConfigError) as info:
            self.backend_cls.validate_config({**self.base, **change})
        assert info.value.key == key
        assert key in str(info.value)

    def test_secret_never_in_config_errors_or_repr(self) -> None:
        secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        with pytest.raises(ConfigError) as info:
            self.backend_cls.validate_config({**self.base, "access_key_secret": secret, "timeout": "x"})
        assert secret not in str(info.value)
        keys = {"access_key_id": "AKIDEXAMPLE", "access_key_secret": secret}
        backend: Any = self.backend_cls({**self.base, **keys})
        assert secret not in repr(backend) and secret not in repr(backend.settings)

    def test_ca_cert_files_are_checked_and_merged(self, tmp_path: Path) -> None:
        first, second = tmp_path / "a.pem", tmp_path / "b.pem"
        first.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        second.write_text("-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----")
        backend: Any = self.backend_cls({**self.base, "ca_cert_files": [str(first), str(second)]})
        bundle = backend.tls_verify()
        assert isinstance(bundle, str)
        text = Path(bundle).read_text()
        assert "AAAA" in text and "BBBB" in text
        backend.close()
        assert not Path(bundle).exists()
        skip: Any = self.backend_cls({**self.base, "ca_cert_files": [str(first)], "skip_verify": True})
        assert skip.tls_verify() is False

    def test_unknown_keys_are_warned_about(self, caplog: pytest.LogCaptureFixture) -> None:
        self.backend_cls.validate_config({**self.base, "bukcet": "typo", "meta_prefix": "meta/"})
        assert "bukcet" in caplog.text
        assert "meta_prefix" not in caplog.text  # nydusify's key, accepted silently


class ObjectStoreContract(ObjectStoreCase, BackendContract):
    """BackendContract on moto: blobs under a fresh ``object_prefix`` per test, stored with boto3."""

    writable = True

    @pytest.fixture
    def prefix(self) -> str:
        """A fresh object prefix."""
        return f"nydus/{next(_prefixes)}/"

    @pytest.fixture
    def backend(self, moto: MotoServer, prefix: str) -> Iterator[Backend]:
        """The backend under test, reading ``prefix`` in :attr:`bucket`."""
        backend = self.make(moto.endpoint, object_prefix=prefix)
        yield backend
        backend.close()

    @pytest.fixture
    def put_blob(self, moto: MotoServer, prefix: str) -> Callable[[str, bytes], None]:
        """Store a blob where ``backend`` reads it."""
        client = moto.client()
        return lambda blob_id, data: client.put_object(Bucket=self.bucket, Key=prefix + blob_id, Body=data)


class ObjectStoreServerSuite(ObjectStoreCase):
    """The backend against moto, a front injecting 5xx and resets, a closed port and a hung server."""

    #: At least this many log records are written at DEBUG by a write, a read and a failed HEAD.
    min_log_records: ClassVar[int] = 5

    @pytest.fixture
    def backend(self, moto: MotoServer) -> Iterator[Any]:
        """The backend on moto."""
        backend = self.make(moto.endpoint)
        yield backend
        backend.close()

    @pytest.fixture
    def flaky(self, moto: MotoServer) -> Iterator[FlakyFront]:
        """A front before moto that fails on demand."""
        with FlakyFront(moto.endpoint) as front:
            yield front

    def test_large_blob_goes_up_in_parts_and_reads_back(self, backend: Any, moto: MotoServer) -> None:
        data = random_bytes(20 * MiB + 12345, seed=1)
        blob_id = blob_id_of(data)
        backend.write(blob_id, io.BytesIO(data), len(data))
        head = moto.client().head_object(Bucket=self.bucket, Key=f"blobs/{blob_id}")
        assert head["ContentLength"] == len(data)
        assert head["ETag"] == multipart_etag(data, backend.multipart_chunksize)  # 3 parts of 8 MiB
        assert backend.size(blob_id) == len(data)
        for offset, length in ((0, 4096), (8 * MiB - 10, 20), (8 * MiB - 3, 6), (len(data) - 100, 1000)):
            assert backend.read(blob_id, offset, length) == data[offset:offset + length]
        assert hashlib.sha256(backend.read(blob_id, 0, len(data))).hexdigest() == blob_id

    def test_small_blob_is_one_put(self, backend: Any, moto: MotoServer) -> None:
        data = random_bytes(1000, seed=2)
        backend.write(blob_id_of(data), data)
        etag = moto.client().head_object(Bucket=self.bucket, Key=f"blobs/{blob_id_of(data)}")["ETag"]
        assert etag == f'"{hashlib.md5(data).hexdigest()}"'

    def test_stream_without_size_in_parts(self, backend: Any, moto: MotoServer) -> None:
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
        head = moto.client().head_object(Bucket=self.bucket, Key=f"blobs/{blob_id_of(data)}")
        assert head["ETag"] == multipart_etag(data, backend.multipart_chunksize)
        assert backend.read(blob_id_of(data), 0, len(data)) == data

    def test_short_multipart_stream_aborts_and_stores_nothing(self, backend: Any, moto: MotoServer) -> None:
        data = random_bytes(18 * MiB, seed=3)
        blob_id = blob_id_of(data)
        with pytest.raises(NydusError, match="ended after"):
            backend.write(blob_id, io.BytesIO(data[: 17 * MiB]), len(data))
        assert not backend.exists(blob_id)
        uploads = moto.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        assert [u for u in uploads if u["Key"].endswith(blob_id)] == []

    def test_missing_object_and_wrong_bucket(self, moto: MotoServer, backend: Any) -> None:
        missing = blob_id_of(b"never stored")
        with pytest.raises(BlobNotFoundError, match=f"{backend.name}://{self.bucket}/blobs/{missing}"):
            backend.read(missing, 0, 10)
        wrong = self.make(moto.endpoint, bucket_name="no-such-bucket")
        with pytest.raises(BlobNotFoundError, match="bucket does not exist"):
            wrong.read(missing, 0, 10)
        with pytest.raises(BlobNotFoundError):
            wrong.size(missing)
        assert wrong.exists(missing) is False

    @pytest.mark.parametrize("call", ["read", "size"])
    def test_server_down_fails_fast_and_clearly(self, call: str) -> None:
        port = free_port()  # nothing listens here
        backend = self.make(f"127.0.0.1:{port}", retry_limit=2, timeout=1, connect_timeout=1)
        start = time.monotonic()
        with pytest.raises(TransientBackendError) as info:
            backend.read(blob_id_of(b"x"), 0, 10) if call == "read" else backend.size(blob_id_of(b"x"))
        assert time.monotonic() - start < 1 * 3 + 5  # timeout x (retry_limit + 1) + slack
        text = str(info.value)
        assert f"127.0.0.1:{port}" in text and "cannot reach" in text
        assert ACCESS_KEY_SECRET not in text and "\n" not in text

    def test_hung_server_times_out_within_bound(self) -> None:
        with BlackholeServer() as hole:
            backend = self.make(hole.address, retry_limit=1, timeout=1, connect_timeout=1)
            start = time.monotonic()
            with pytest.raises(TransientBackendError, match="timed out"):
                backend.read(blob_id_of(b"x"), 0, 10)
            elapsed = time.monotonic() - start
        assert 1.0 <= elapsed < 1 * 2 + 4  # timeout x (retry_limit + 1) + slack (backoff)

    @pytest.mark.parametrize("failure", [503, 500, 502, "reset"])
    def test_transient_failures_cost_retries_then_succeed(
        self, flaky: FlakyFront, moto: MotoServer, failure: int | str
    ) -> None:
        data = random_bytes(5000, seed=4)
        blob_id = self.put(moto, data)
        backend = self.make(flaky.endpoint, retry_limit=3)
        flaky.fail_next(2, failure)
        assert backend.read(blob_id, 10, 100) == data[10:110]
        assert flaky.failed == 2

    def test_failures_beyond_retry_limit_are_transient_errors(
        self, flaky: FlakyFront, moto: MotoServer
    ) -> None:
        data = random_bytes(500, seed=5)
        blob_id = self.put(moto, data)
        backend = self.make(flaky.endpoint, retry_limit=1)
        flaky.fail_next(5, 503)
        with pytest.raises(TransientBackendError, match="ServiceUnavailable"):
            backend.read(blob_id, 0, 10)
        assert flaky.failed == 2  # the first try and one retry

    def test_secret_never_in_error_text(self, moto: MotoServer) -> None:
        secret = "S3cr3t-" + "k" * 33
        cases = [
            self.make(moto.endpoint, access_key_secret=secret, bucket_name="missing-bucket"),
            self.make(f"127.0.0.1:{free_port()}", access_key_secret=secret),
            self.make(moto.endpoint, access_key_secret=secret,
                      proxy={"url": f"http://user:{secret}@127.0.0.1:{free_port()}", "fallback": False}),
        ]
        for backend in cases:
            with pytest.raises(NydusError) as info:
                backend.read(blob_id_of(b"y"), 0, 1)
            assert secret not in str(info.value)
            assert secret not in repr(info.value.args)

    def test_secret_never_logged(self, moto: MotoServer, caplog: pytest.LogCaptureFixture) -> None:
        """Everything logged at DEBUG (ours, the SDK's, urllib3's) while writing, reading and failing."""
        secret = "Log-S3cret-" + "q" * 29
        caplog.set_level(logging.DEBUG)
        backend = self.make(moto.endpoint, access_key_secret=secret, retry_limit=1)
        data = random_bytes(9 * MiB, seed=8)  # a multipart upload
        backend.write(blob_id_of(data), io.BytesIO(data), len(data))
        assert backend.read(blob_id_of(data), 0, 100) == data[:100]
        with pytest.raises(BlobNotFoundError):
            backend.size(blob_id_of(b"absent"))
        backend.close()
        assert len(caplog.records) > self.min_log_records
        assert secret not in caplog.text

    def test_sha256_prefixed_ids_and_bad_ids(self, backend: Any, moto: MotoServer) -> None:
        data = b"prefixed id"
        blob_id = self.put(moto, data)
        assert backend.read(f"sha256:{blob_id}", 0, 100) == data
        with pytest.raises(BlobNotFoundError):
            backend.read("/etc/passwd", 0, 1)


class ObjectStoreProxySuite(ObjectStoreCase):
    """The Dragonfly ``proxy`` block: reads go through the proxy while it is up, fall back to the object
    store when it is down, and return once the background health check (``ping_url``, every
    ``check_interval``) passes again: :class:`~nydus_core.remote_backend.ProxyHealth`, the policy the
    registry backend uses too."""

    object_prefix: ClassVar[str] = ""
    DATA: ClassVar[bytes] = random_bytes(100_000, seed=7)
    BLOB: ClassVar[str] = blob_id_of(DATA)

    @pytest.fixture(scope="class")
    @classmethod
    def moto(cls) -> MotoServer:
        """The shared moto server, with :attr:`bucket` holding :attr:`DATA`."""
        server = shared_moto()
        server.create_bucket(cls.bucket)
        cls.put(server, cls.DATA)
        return server

    @pytest.fixture
    def proxy(self) -> Iterator[ForwardProxy]:
        """A forwarding proxy standing in for dfdaemon."""
        with ForwardProxy() as proxy:
            yield proxy

    @pytest.fixture(autouse=True)
    def _close_backends(self) -> Iterator[None]:
        """Close every backend a test made (stopping its proxy health checker)."""
        self._made: list[Any] = []
        yield
        for backend in self._made:
            backend.close()

    def backend_for(self, moto: MotoServer, proxy: ForwardProxy, **block: Any) -> Any:
        """A backend on moto whose ``proxy`` block is ``url`` plus ``block`` (closed after the test)."""
        backend = self.make(moto.endpoint, proxy={"url": proxy.url, **block})
        self._made.append(backend)
        return backend

    def test_reads_go_through_the_proxy(self, moto: MotoServer, proxy: ForwardProxy) -> None:
        backend = self.backend_for(moto, proxy)
        assert backend.size(self.BLOB) == len(self.DATA)
        assert backend.read(self.BLOB, 5, 50) == self.DATA[5:55]
        assert proxy.forwarded == {"HEAD": 1, "GET": 1}

    def test_fallback_while_down_and_back_when_it_recovers(
        self, moto: MotoServer, proxy: ForwardProxy
    ) -> None:
        data = self.DATA
        backend = self.backend_for(moto, proxy, ping_url=proxy.ping_url, check_interval=0.5)
        assert backend.read(self.BLOB, 0, 10) == data[:10]
        assert proxy.total == 1 and proxy.pings >= 1  # the first use checked the proxy synchronously
        proxy.stop()
        assert backend.read(self.BLOB, 10, 10) == data[10:20]  # failed over to moto directly
        assert not backend.proxy_health.healthy
        assert backend.read(self.BLOB, 20, 10) == data[20:30]  # still direct, no new attempt
        proxy.start()
        assert proxy.total == 1
        pings = proxy.pings
        wait_until(lambda: backend.proxy_health.healthy, 3, message="proxy healthy again")
        assert proxy.pings > pings  # brought back by the background check of ping_url
        assert backend.read(self.BLOB, 30, 10) == data[30:40]
        assert proxy.total == 2

    def test_failed_ping_keeps_requests_direct(self, moto: MotoServer, proxy: ForwardProxy) -> None:
        dead_ping = f"http://127.0.0.1:{free_port()}/server/ping"  # the health endpoint does not answer
        backend = self.backend_for(moto, proxy, ping_url=dead_ping, check_interval=0.2)
        proxy.stop()
        assert backend.read(self.BLOB, 0, 10) == self.DATA[:10]
        proxy.start()
        checks = backend.proxy_health.checks
        wait_until(lambda: backend.proxy_health.checks > checks, 3, message="a health check after start")
        assert backend.read(self.BLOB, 10, 10) == self.DATA[10:20]
        assert proxy.total == 0  # the proxy listens again, but its health check fails: stay direct

    def test_without_fallback_a_down_proxy_is_an_error(self, moto: MotoServer, proxy: ForwardProxy) -> None:
        backend = self.backend_for(moto, proxy, fallback=False)
        proxy.stop()
        with pytest.raises(TransientBackendError, match="proxy"):
            backend.read(self.BLOB, 0, 10)

    def test_writes_do_not_use_the_proxy(self, moto: MotoServer, proxy: ForwardProxy) -> None:
        backend = self.backend_for(moto, proxy)
        backend.write(blob_id_of(b"pushed"), b"pushed")
        assert proxy.total == 0
        assert backend.read(blob_id_of(b"pushed"), 0, 100) == b"pushed"
        assert proxy.total == 1

    def test_use_http_talks_plain_http_through_the_proxy(self, moto: MotoServer, proxy: ForwardProxy) -> None:
        """scheme https (moto only speaks http): with use_http, reads through the proxy go as http://."""
        backend = self.make(moto.endpoint, scheme="https",
                            proxy={"url": proxy.url, "use_http": True, "fallback": False})
        assert backend.read(self.BLOB, 100, 10) == self.DATA[100:110]
        assert proxy.forwarded == {"GET": 1}


FILES: dict[str, bytes | str | None] = {
    "etc": None,
    "etc/hostname": b"nydus\n",
    "etc/empty": b"",
    "usr/lib/big.bin": random_bytes(3 * MiB + 17, seed=21),
    "usr/lib/text.txt": payload(300_000, seed=22),
    "usr/lib/exact.bin": random_bytes(0x10000, seed=23),
    "usr/bin/link": "->../lib/text.txt",
    "a/b/c/d/deep.txt": b"deep file\n" * 1000,
}


def nydus_cat(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``nydus cat`` from this interpreter's environment."""
    exe = Path(sys.executable).parent / "nydus"
    return subprocess.run([str(exe), "cat", *args], capture_output=True, env=clean_env(), timeout=120,
                          stdin=subprocess.DEVNULL)


class NydusCatSuite(ObjectStoreCase):
    """End to end: an image built by nydus-py, its blobs in a moto bucket, and ``nydus cat`` with a
    nydusd config naming the backend gives back every file's bytes."""

    object_prefix: ClassVar[str] = "nydus/"

    def nydusd_config(self, tmp_path: Path, backend_config: dict[str, Any], **device: Any) -> Path:
        """Write a nydusd config naming the backend; return its path."""
        config = tmp_path / "nydusd.json"
        config.write_text(json.dumps({
            "device": {"backend": {"type": self.backend_cls.name, "config": backend_config}, **device},
            "mode": "direct", "digest_validate": True,
        }))
        return config

    @pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "blobcache"])
    def test_nydus_cat_reads_every_file(self, tmp_path: Path, moto: MotoServer, cache: bool) -> None:
        bootstrap, blob_dir, _ = build_image(tmp_path, FILES, chunk_size=0x10000)
        client = moto.client()
        blobs = sorted(os.listdir(blob_dir))
        assert blobs
        for name in blobs:
            client.upload_file(os.path.join(blob_dir, name), self.bucket, f"nydus/{name}")
        device: dict[str, Any] = {}
        if cache:
            device["cache"] = {"type": "blobcache", "config": {"work_dir": str(tmp_path / "cache")}}
        config = self.nydusd_config(tmp_path, self.config(moto.endpoint, retry_limit=1), **device)

        regular = {p: content for p, content in sorted(FILES.items()) if isinstance(content, bytes)}
        proc = nydus_cat(bootstrap, *(f"/{p}" for p in regular), "--config", str(config))
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout == b"".join(regular.values())
        one = nydus_cat(bootstrap, "/usr/bin/link", "--config", str(config))
        assert one.returncode == 0 and one.stdout == FILES["usr/lib/text.txt"]

    def test_a_missing_blob_is_a_one_line_error(self, tmp_path: Path, moto: MotoServer) -> None:
        bootstrap, _, _ = build_image(tmp_path, {"f.txt": b"never uploaded\n"})
        config = self.nydusd_config(tmp_path, self.config(moto.endpoint, object_prefix="absent/"))
        proc = nydus_cat(bootstrap, "/f.txt", "--config", str(config))
        err = proc.stderr.decode()
        assert proc.returncode != 0 and proc.stdout == b""
        assert "not found" in err and f"{self.backend_cls.name}://{self.bucket}/absent/" in err
        assert "Traceback" not in err and ACCESS_KEY_SECRET not in err
