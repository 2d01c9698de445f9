"""nydus_core.remote_backend: config checks, redaction, the exact-size upload stream and the Dragonfly
proxy health policy every remote backend uses (with a real health endpoint on 127.0.0.1)."""

from __future__ import annotations

import http.server
import io
import time
from pathlib import Path
from typing import Any

import pytest
from nydus_testkit.servers import BackgroundHTTPServer, free_port, wait_until

from nydus_core.errors import BackendError, BlobNotFoundError, ConfigError
from nydus_core.remote_backend import (
    ExactSizeReader,
    ProxyHealth,
    ProxySettings,
    Redactor,
    ca_bundle,
    can_connect,
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
    with pytest.raises(ConfigError) as info:  # the checker would spin
        parse_proxy({"proxy": {"url": "http://127.0.0.1:65001", "check_interval": 0}}, "t")
    assert info.value.key == "proxy.check_interval" and "must be > 0" in str(info.value)
    assert parse_proxy({"proxy": {"check_interval": 0}}, "t").check_interval == 0  # no proxy: no checker


class _Health(http.server.BaseHTTPRequestHandler):
    """Answers ``GET /<status>`` with that status (a ``Location`` on 3xx)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status = int(self.path.strip("/") or 200)
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/200")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_ping_is_healthy_on_2xx_only() -> None:
    with BackgroundHTTPServer(_Health) as server:
        assert ping(server.url + "/200", 2) and ping(server.url + "/204", 2)
        for status in (302, 404, 503):  # redirects are not followed; 4xx is as unhealthy as 5xx
            assert not ping(f"{server.url}/{status}", 2), status
        assert can_connect(server.url, 1)
    assert not ping(f"http://127.0.0.1:{free_port()}/", 1)
    assert not can_connect(f"http://127.0.0.1:{free_port()}", 1)


class Answers:
    """A health check whose answer the test sets; counts calls."""

    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.calls: list[float] = []

    def __call__(self) -> bool:
        self.calls.append(time.monotonic())
        return self.ok


def test_health_falls_back_then_returns_after_a_good_check() -> None:
    answers = Answers()
    health = ProxyHealth(ProxySettings(url="http://p:1", ping_url="http://p:2/ping", check_interval=60),
                         ping=answers)
    try:
        assert not health.healthy  # nothing checked yet
        assert health.use_proxy() and health.healthy and health.checks == 1  # the first use checks
        health.mark_failed("connection refused")
        assert not health.use_proxy() and not health.healthy
        for _ in range(5):  # requests never probe: only the checker (every check_interval) does
            assert not health.use_proxy()
        assert health.checks == 1
        answers.ok = False
        assert not health.check_now() and not health.use_proxy()
        answers.ok = True
        assert health.check_now() and health.use_proxy() and health.healthy
    finally:
        health.close()


def test_health_without_fallback_or_ping_url() -> None:
    strict = ProxyHealth(ProxySettings(url="http://p:1", fallback=False, check_interval=60),
                         ping=Answers(False))
    try:
        assert strict.use_proxy() and not strict.healthy  # without fallback the proxy is always used
        strict.mark_failed("x")
        assert strict.use_proxy()
    finally:
        strict.close()
    with BackgroundHTTPServer(_Health) as server:
        plain = ProxyHealth(ProxySettings(url=server.url, check_interval=60), timeout=1)
        try:
            assert plain.use_proxy()  # no ping_url: a TCP connect to the proxy is the check
            server.stop()
            assert not plain.check_now() and not plain.use_proxy()
            server.start()
            assert plain.check_now() and plain.use_proxy()
        finally:
            plain.close()
    off = ProxyHealth(ProxySettings(), ping=Answers())
    assert not off.use_proxy() and off.checks == 0  # no proxy url: never used, never checked


def test_health_checks_at_interval_and_pauses_when_idle() -> None:
    answers = Answers()
    health = ProxyHealth(ProxySettings(url="http://127.0.0.1:1", check_interval=0.1, check_pause_elapsed=0.5),
                         timeout=0.1, ping=answers)
    try:
        assert health.available() and len(answers.calls) == 1  # the first use checks synchronously
        answers.ok = False
        wait_until(lambda: not health.healthy, 2, message="marked down by the checker")
        answers.ok = True
        wait_until(lambda: health.healthy, 2, message="back up")
        time.sleep(1.0)  # nobody asks: checks pause after 0.5 s
        n = len(answers.calls)
        time.sleep(0.5)
        assert len(answers.calls) == n
        assert health.available()  # a request wakes the checker at once
        wait_until(lambda: len(answers.calls) > n, 1, message="checker woken")
        health.mark_failed()
        assert not health.available()
    finally:
        health.close()
    n = len(answers.calls)
    time.sleep(0.3)
    assert len(answers.calls) == n  # closed: no more checks


def test_checker_ends_when_its_owner_is_gone() -> None:
    health = ProxyHealth(ProxySettings(url="http://127.0.0.1:1", check_interval=0.05), ping=Answers())
    assert health.use_proxy()
    checker = health._thread
    assert checker is not None and checker.is_alive() and checker.name == "dragonfly-proxy-health"
    del health  # no reference cycle: freed at once, without a garbage collection
    checker.join(2)
    assert not checker.is_alive()
    with BackgroundHTTPServer(_Health) as server:  # the same with the default check (a TCP connect)
        health = ProxyHealth(ProxySettings(url=server.url, check_interval=0.05), timeout=1)
        assert health.use_proxy()
        checker = health._thread
        del health
        checker.join(2)
        assert not checker.is_alive()


def test_health_log_lines_name_the_origin_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    answers = Answers()
    health = ProxyHealth(ProxySettings(url="http://u:pr0xy-pw@p:1", check_interval=60), ping=answers,
                         origin="the bucket")
    try:
        assert health.use_proxy()
        health.mark_failed("refused by http://u:pr0xy-pw@p:1")
        assert "falling back to the bucket until it passes a health check" in caplog.text
        assert health.check_now()
        assert "is healthy again" in caplog.text
        answers.ok = False
        health.check_now()
        assert "down: falling back to the bucket" in caplog.text
        assert "pr0xy-pw" not in caplog.text and "p:1" in caplog.text
    finally:
        health.close()


def test_object_key() -> None:
    blob = "ab" * 32
    assert object_key("nydus/", blob, "s3") == f"nydus/{blob}"
    assert object_key("", f"sha256:{blob}", "s3") == blob
    for bad in ("", "sha256:", " x", "/etc/passwd"):
        with pytest.raises(BlobNotFoundError, match="s3 backend"):
            object_key("p/", bad, "s3")
