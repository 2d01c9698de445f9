"""nydus_core.remote_backend: config checks, redaction, the exact-size upload stream and the Dragonfly
proxy route (with a real health endpoint on 127.0.0.1)."""

from __future__ import annotations

import http.server
import io
from pathlib import Path
from typing import Any

import pytest

from nydus_core.errors import BackendError, BlobNotFoundError, ConfigError
from nydus_core.remote_backend import (
    ExactSizeReader,
    ProxyRoute,
    ProxySettings,
    Redactor,
    ca_bundle,
    get_bool,
    get_ca_cert_files,
    get_number,
    get_str,
    get_url,
    is_ip_or_localhost,
    object_key,
    parse_proxy,
    ping,
    redact,
)
from nydus_core.testing.servers import BackgroundHTTPServer, free_port


def test_value_checks_name_the_key() -> None:
    assert get_str({"a": " x "}, "a") == "x" and get_str({}, "a", "d") == "d"
    assert get_str({"a": None}, "a") == ""
    assert get_bool({"a": True}, "a", False) is True and get_bool({}, "a", True) is True
    assert get_number({"a": 2.5}, "a", 1) == 2.5 and get_number({}, "a", 7, integer=True) == 7
    assert get_url({"u": "http://h:1/p"}, "u") == "http://h:1/p" and get_url({}, "u") == ""
    for call, key in [
        (lambda: get_str({"a": 1}, "a", prefix="p."), "p.a"),
        (lambda: get_bool({"a": "true"}, "a", False), "a"),
        (lambda: get_number({"a": True}, "a", 1), "a"),
        (lambda: get_number({"a": 1.5}, "a", 1, integer=True), "a"),
        (lambda: get_number({"a": -1}, "a", 1), "a"),
        (lambda: get_url({"u": "h:1"}, "u"), "u"),
        (lambda: get_url({"u": "http://"}, "u"), "u"),
        (lambda: get_ca_cert_files({"ca_cert_files": ["/no/such.pem"]}), "ca_cert_files"),
    ]:
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.key == key


def test_url_errors_do_not_echo_passwords() -> None:
    with pytest.raises(ConfigError) as info:
        get_url({"u": "ftp://user:hunter2-password@host"}, "u")
    assert "hunter2-password" not in str(info.value)


def test_ip_or_localhost() -> None:
    assert is_ip_or_localhost("127.0.0.1:9000") and is_ip_or_localhost("localhost")
    assert is_ip_or_localhost("[::1]:9000") and is_ip_or_localhost("http://10.0.0.1")
    assert not is_ip_or_localhost("s3.amazonaws.com")
    assert not is_ip_or_localhost("oss-cn-hangzhou.aliyuncs.com")


def test_redact() -> None:
    text = "GET http://alice:s3cret-pass@proxy:8080/x failed; key wJalrXUtnFEMI/K7MDENG"
    out = redact(text, ["wJalrXUtnFEMI/K7MDENG", "", "ab"])
    assert "s3cret-pass" not in out and "wJalrXUtnFEMI/K7MDENG" not in out
    assert "http://***@proxy:8080/x" in out


def test_redactor_scrubs_secrets_userinfo_and_queries() -> None:
    r = Redactor("s3cret-pass")
    r.add("tok-abcdef", transient=True)
    text = ("login s3cret-pass failed at http://u:pw@proxy:1/x and "
            "https://oss.example.com/blob?Expires=1&Signature=abc bearer tok-abcdef "
            "Authorization: Bearer xyz123")
    out = r(text)
    for secret in ("s3cret-pass", "u:pw", "Signature=abc", "tok-abcdef", "xyz123"):
        assert secret not in out
    assert "https://oss.example.com/blob?" in out


def test_ca_bundle_joins_files(tmp_path: Path) -> None:
    (tmp_path / "a.pem").write_bytes(b"A\n\n")
    (tmp_path / "b.pem").write_bytes(b"B")
    path = Path(ca_bundle([str(tmp_path / "a.pem"), str(tmp_path / "b.pem")]))
    try:
        assert path.read_bytes() == b"A\nB\n"
    finally:
        path.unlink()


class _Pipe(io.RawIOBase):
    """Returns at most 3 bytes per read, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._data.read(3 if n < 0 else min(n, 3))


@pytest.mark.parametrize("make", [io.BytesIO, _Pipe])
def test_exact_size_reader(make: Any) -> None:
    data = bytes(range(100))
    reader = ExactSizeReader(make(data), 100, "PUT x")
    assert reader.read(10) == data[:10]
    assert reader.read() == data[10:]
    assert reader.read(5) == b"" and reader.count == 100

    short = ExactSizeReader(make(data[:60]), 100, "PUT x")
    assert short.read(50) == data[:50]
    with pytest.raises(BackendError, match="ended after 60 of the declared 100 bytes"):
        short.read(50)

    long = ExactSizeReader(make(data), 60, "PUT x")
    assert long.read(60) == data[:60]
    with pytest.raises(BackendError, match="more than the declared 60 bytes"):
        long.read(10)
    with pytest.raises(BackendError, match="more than the declared"):
        ExactSizeReader(make(data), 60, "PUT x").read()

    unchecked = ExactSizeReader(make(data), None, "PUT x")
    assert unchecked.read(1000) + unchecked.read() + unchecked.read() == data[: unchecked.count]

    piped = ExactSizeReader(make(data), None, "PUT x")  # no size: short reads are still joined
    assert piped.read(50) == data[:50] and piped.read(60) == data[50:] and piped.read(1) == b""
    assert ExactSizeReader(make(data), None, "PUT x").read() == data


def test_proxy_block() -> None:
    assert parse_proxy({}, "t") == ProxySettings()
    assert not ProxySettings().enabled
    p = parse_proxy({"proxy": {"url": "http://127.0.0.1:65001", "fallback": False, "check_interval": 2}}, "t")
    assert p.enabled and not p.fallback and p.check_interval == 2
    assert p.as_dict()["url"] == "http://127.0.0.1:65001"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_ping() -> None:
    with BackgroundHTTPServer(_Health) as server:
        assert ping(server.url + "/server/ping", 2)
    assert not ping(f"http://127.0.0.1:{free_port()}/", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_route_falls_back_then_returns_after_a_good_ping() -> None:
    clock = Clock()
    answers: list[bool] = []
    probes: list[str] = []

    def probe(url: str, timeout: float) -> bool:
        probes.append(url)
        return answers.pop(0)

    route = ProxyRoute(ProxySettings(url="http://p:1", ping_url="http://p:2/ping", check_interval=5),
                       clock=clock, probe=probe)
    assert route.use_proxy() and route.healthy
    route.mark_down("connection refused")
    assert not route.use_proxy() and not route.healthy
    clock.now += 4.9
    assert not route.use_proxy() and probes == []
    clock.now += 0.2
    answers.append(False)
    assert not route.use_proxy() and probes == ["http://p:2/ping"]
    assert not route.use_proxy()  # the failed check restarts the interval
    clock.now += 5.1
    answers.append(True)
    assert route.use_proxy() and route.healthy


def test_route_without_fallback_or_ping() -> None:
    clock = Clock()
    strict = ProxyRoute(ProxySettings(url="http://p:1", fallback=False), clock=clock)
    strict.mark_down("x")
    assert strict.use_proxy()
    plain = ProxyRoute(ProxySettings(url="http://p:1", check_interval=1), clock=clock)
    plain.mark_down("x")
    assert not plain.use_proxy()
    clock.now += 1.5
    assert plain.use_proxy()  # no ping_url: simply try the proxy again
    assert not ProxyRoute(ProxySettings(), clock=clock).use_proxy()


def test_object_key() -> None:
    blob = "ab" * 32
    assert object_key("nydus/", blob, "s3") == f"nydus/{blob}"
    assert object_key("", f"sha256:{blob}", "s3") == blob
    for bad in ("", "sha256:", " x", "/etc/passwd"):
        with pytest.raises(BlobNotFoundError, match="s3 backend"):
            object_key("p/", bad, "s3")
