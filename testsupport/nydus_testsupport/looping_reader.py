"""A reader thread for failover tests: it reads one file over and over, dropping the file's page
cache after each round so every round goes to the daemon, and records every error and wrong digest."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

__all__ = ["LoopingReader"]


class LoopingReader(threading.Thread):
    """Reads ``path`` in a loop, dropping its page cache each round; counts rounds and errors
    (``"wrong bytes"`` when a round's sha256 is not ``digest``). Set :attr:`stop` to end it."""

    def __init__(self, path: Path, digest: str) -> None:
        super().__init__(daemon=True)
        self.path, self.digest = path, digest
        self.rounds = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        """Read rounds until :attr:`stop` is set."""
        while not self.stop.is_set():
            try:
                h = hashlib.sha256()
                with open(self.path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                if h.hexdigest() != self.digest:
                    self.errors.append("wrong bytes")
            except OSError as exc:
                self.errors.append(str(exc))
                time.sleep(0.05)
            self.rounds += 1

    def wait_rounds(self, n: int, timeout: float = 60.0) -> None:
        """Wait until ``n`` more rounds are done; fail (naming the first errors) after ``timeout``."""
        target = self.rounds + n
        deadline = time.monotonic() + timeout
        while self.rounds < target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.rounds >= target, f"reader stuck at round {self.rounds}; errors {self.errors[:3]}"
