"""The Dragonfly proxy health checker on its own: interval, pause when idle, wake on demand."""

from __future__ import annotations

import time

from nydus_backend_registry.config import ProxyConfig
from nydus_backend_registry.dragonfly import ProxyHealth
from nydus_backend_registry.errormap import Redactor

from nydus_core.testing.servers import wait_until


def test_checks_at_interval_and_pauses_when_idle() -> None:
    answers = {"ok": True}
    calls = []

    def ping() -> bool:
        calls.append(time.monotonic())
        return answers["ok"]

    health = ProxyHealth(ProxyConfig(url="http://127.0.0.1:1", check_interval=0.1, check_pause_elapsed=0.5),
                         timeout=0.1, redact=Redactor(), ping=ping)
    try:
        assert not health.healthy  # nothing checked yet
        assert health.available() and len(calls) == 1  # the first use checks synchronously
        answers["ok"] = False
        wait_until(lambda: not health.healthy, 2, message="marked down by the checker")
        answers["ok"] = True
        wait_until(lambda: health.healthy, 2, message="back up")
        time.sleep(1.0)  # nobody asks: checks pause after 0.5 s
        n = len(calls)
        time.sleep(0.5)
        assert len(calls) == n
        assert health.available()  # a request wakes the checker at once
        wait_until(lambda: len(calls) > n, 1, message="checker woken")
        health.mark_failed()
        assert not health.available()
    finally:
        health.close()
