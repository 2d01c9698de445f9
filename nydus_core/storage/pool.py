"""A bounded pool of fetch workers where on-demand work always goes ahead of prefetch.

Jobs wait in two queues. An idle worker takes the oldest on-demand job first; it takes a prefetch
job only when no on-demand job waits and fewer than ``workers - 1`` prefetch jobs are running, so
one worker is always free for a user's read even while prefetch saturates the rest.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["ON_DEMAND", "PREFETCH", "FetchPool"]

ON_DEMAND = 0
PREFETCH = 1


class FetchPool:
    """``workers`` daemon threads running submitted callables, on-demand first."""

    def __init__(self, workers: int = 8, name: str = "nydus-fetch") -> None:
        self.workers = max(1, int(workers))
        self.prefetch_limit = max(1, self.workers - 1)
        self._name = name
        self._cond = threading.Condition()
        self._urgent: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._background: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._running_prefetch = 0
        self._closed = False

    def submit(self, fn: Callable[[], Any], priority: int = ON_DEMAND) -> Future[Any]:
        """Queue ``fn`` and return a future of its result."""
        fut: Future[Any] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("fetch pool is closed")
            (self._urgent if priority == ON_DEMAND else self._background).append((fut, fn))
            self._wake()
        return fut

    def _wake(self) -> None:
        """Wake an idle worker, or start one when none idles and the pool is not full (cond held)."""
        if self._idle == 0 and len(self._threads) < self.workers:
            t = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()
        else:
            self._cond.notify()

    def promote(self, fut: Future[Any]) -> bool:
        """Move a queued prefetch job to the front of the on-demand queue (a reader needs it now)."""
        with self._cond:
            for i, job in enumerate(self._background):
                if job[0] is fut:
                    del self._background[i]
                    self._urgent.appendleft(job)
                    self._wake()
                    return True
        return False

    def pending(self) -> int:
        """Return the number of on-demand jobs waiting for a worker."""
        return len(self._urgent)

    def _take(self) -> tuple[Future[Any], Callable[[], Any], bool] | None:
        with self._cond:
            while True:
                if self._urgent:
                    fut, fn = self._urgent.popleft()
                    return fut, fn, False
                if self._background and self._running_prefetch < self.prefetch_limit:
                    fut, fn = self._background.popleft()
                    self._running_prefetch += 1
                    return fut, fn, True
                if self._closed:
                    return None
                self._idle += 1
                self._cond.wait()
                self._idle -= 1

    def _run(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            fut, fn, background = job
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as exc:  # handed to the waiter
                        fut.set_exception(exc)
            finally:
                if background:
                    with self._cond:
                        self._running_prefetch -= 1
                        self._cond.notify()

    def close(self, wait: bool = True) -> None:
        """Stop accepting jobs; cancel queued prefetch jobs; let workers finish and exit."""
        with self._cond:
            self._closed = True
            while self._background:
                fut, _ = self._background.popleft()
                fut.cancel()
            self._cond.notify_all()
        if wait:
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join()
