"""The Dragonfly `proxy` block on the s3 backend: reads go through the proxy while it is up, fall back
to the object store when it is down, and return after `check_interval` once `ping_url` answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from nydus_backend_s3.backend import S3Backend

from nydus_core.errors import TransientBackendError
from nydus_core.testing.objstore import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    ForwardProxy,
    MotoServer,
    shared_moto,
)
from nydus_core.testing.samples import blob_id_of, random_bytes
from nydus_core.testing.servers import free_port

BUCKET = "s3-proxied"
DATA = random_bytes(100_000, seed=7)
BLOB = blob_id_of(DATA)


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    server = shared_moto()
    server.create_bucket(BUCKET)
    server.client().put_object(Bucket=BUCKET, Key=BLOB, Body=DATA)
    return server


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as proxy:
        yield proxy


def backend_for(moto: MotoServer, proxy: ForwardProxy, **block: Any) -> S3Backend:
    return S3Backend({
        "scheme": "http", "endpoint": moto.endpoint, "bucket_name": BUCKET,
        "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET,
        "proxy": {"url": proxy.url, **block},
    })


def test_reads_go_through_the_proxy(moto: MotoServer, proxy: ForwardProxy) -> None:
    backend = backend_for(moto, proxy)
    assert backend.size(BLOB) == len(DATA)
    assert backend.read(BLOB, 5, 50) == DATA[5:55]
    assert proxy.forwarded == {"HEAD": 1, "GET": 1}


def test_fallback_while_down_and_back_when_it_recovers(moto: MotoServer, proxy: ForwardProxy) -> None:
    backend = backend_for(moto, proxy, ping_url=proxy.ping_url, check_interval=0.5)
    assert backend.read(BLOB, 0, 10) == DATA[:10]
    assert proxy.total == 1
    proxy.stop()
    assert backend.read(BLOB, 10, 10) == DATA[10:20]  # failed over to moto directly
    assert backend.read(BLOB, 20, 10) == DATA[20:30]  # still direct, no new attempt yet
    proxy.start()
    assert proxy.total == 1
    time.sleep(0.6)  # check_interval passes; the ping succeeds
    assert backend.read(BLOB, 30, 10) == DATA[30:40]
    assert proxy.total == 2


def test_failed_ping_keeps_requests_direct(moto: MotoServer, proxy: ForwardProxy) -> None:
    dead_ping = f"http://127.0.0.1:{free_port()}/server/ping"  # the health endpoint does not answer
    backend = backend_for(moto, proxy, ping_url=dead_ping, check_interval=0.2)
    proxy.stop()
    assert backend.read(BLOB, 0, 10) == DATA[:10]
    proxy.start()
    time.sleep(0.3)
    assert backend.read(BLOB, 10, 10) == DATA[10:20]
    assert proxy.total == 0  # the proxy listens again, but its health check fails: stay direct


def test_without_fallback_a_down_proxy_is_an_error(moto: MotoServer, proxy: ForwardProxy) -> None:
    backend = backend_for(moto, proxy, fallback=False)
    proxy.stop()
    with pytest.raises(TransientBackendError, match="proxy"):
        backend.read(BLOB, 0, 10)


def test_writes_do_not_use_the_proxy(moto: MotoServer, proxy: ForwardProxy) -> None:
    backend = backend_for(moto, proxy)
    backend.write(blob_id_of(b"pushed"), b"pushed")
    assert proxy.total == 0
    assert backend.read(blob_id_of(b"pushed"), 0, 100) == b"pushed"
    assert proxy.total == 1


def test_use_http_talks_plain_http_through_the_proxy(moto: MotoServer, proxy: ForwardProxy) -> None:
    """scheme https (moto only speaks http): with use_http, reads through the proxy go as http://."""
    backend = S3Backend({
        "scheme": "https", "endpoint": moto.endpoint, "bucket_name": BUCKET,
        "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET,
        "proxy": {"url": proxy.url, "use_http": True, "fallback": False},
    })
    assert backend.read(BLOB, 100, 10) == DATA[100:110]
    assert proxy.forwarded == {"GET": 1}
