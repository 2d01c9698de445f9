"""Dragonfly proxy health: route requests through the proxy while it answers, fall back when not.

The proxy block's ``ping_url`` is fetched every ``check_interval`` seconds by a background daemon
thread (started on first use, paused after ``check_pause_elapsed`` seconds without requests and
woken by the next one). Without a ``ping_url`` the check is a TCP connect to the proxy. A request
that fails to reach the proxy marks it down at once; the next successful check brings it back.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from .config import ProxyConfig
from .errormap import Redactor

log = logging.getLogger(__name__)


class ProxyHealth:
    """The proxy's current health, kept fresh by a background checker."""

    def __init__(self, cfg: ProxyConfig, *, timeout: float, redact: Redactor,
                 ping: Callable[[], bool] | None = None) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self._redact = redact
        self._ping = ping or self._default_ping
        self._lock = threading.Lock()
        self._healthy: bool | None = None
        self._last_activity = time.monotonic()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.checks = 0
        self._session = requests.Session()
        self._session.trust_env = False

    # -- checks -------------------------------------------------------------------------------

    def _default_ping(self) -> bool:
        if self.cfg.ping_url:
            try:
                resp = self._session.get(self.cfg.ping_url, timeout=(self.timeout, self.timeout),
                                         allow_redirects=False)
                resp.close()
                return 200 <= resp.status_code < 300
            except (requests.RequestException, OSError):
                return False
        parts = urlsplit(self.cfg.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=self.timeout):
                return True
        except OSError:
            return False

    def check_now(self) -> bool:
        """Run one health check and record its result."""
        ok = bool(self._ping())
        self.checks += 1
        with self._lock:
            changed = self._healthy is not None and ok != self._healthy
            self._healthy = ok
        if changed:
            log.warning("Dragonfly proxy %s is %s", self._redact(self.cfg.url),
                        "healthy again: using it" if ok else "down: falling back to the registry"
                        if self.cfg.fallback else "down")
        return ok

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.cfg.check_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            idle = time.monotonic() - self._last_activity
            if self.cfg.check_pause_elapsed and idle > self.cfg.check_pause_elapsed:
                continue  # paused: nobody is reading
            self.check_now()

    # -- state --------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """The last known health (``False`` before the first check)."""
        with self._lock:
            return bool(self._healthy)

    def available(self) -> bool:
        """Called per request: whether to use the proxy now.

        Notes the activity (un-pausing the checker), and on first use checks synchronously and
        starts the background checker.
        """
        now = time.monotonic()
        paused = (self.cfg.check_pause_elapsed and now - self._last_activity > self.cfg.check_pause_elapsed)
        self._last_activity = now
        if self._thread is None:
            with self._lock:
                start = self._thread is None
                if start:
                    self._thread = threading.Thread(target=self._run, name="dragonfly-proxy-health",
                                                    daemon=True)
            if start:
                self.check_now()
                self._thread.start()
        elif paused:
            self._wake.set()
        with self._lock:
            return bool(self._healthy)

    def mark_failed(self) -> None:
        """Record that a request could not reach the proxy (the checker restores it)."""
        with self._lock:
            was, self._healthy = self._healthy, False
        if was:
            log.warning("Dragonfly proxy %s failed a request: falling back to the registry until it "
                        "passes a health check", self._redact(self.cfg.url))

    def close(self) -> None:
        """Stop the checker thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(2)
        self._session.close()
