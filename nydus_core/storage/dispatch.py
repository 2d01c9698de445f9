"""Grouping and dispatch: cut missing chunks into ranged requests and run them.

:meth:`Dispatcher.make_groups` sorts chunks by blob and compressed offset and cuts them into
contiguous :class:`~.fetch_group.FetchGroup` s no larger than a limit, registering each chunk in
flight. A reader runs one of its groups itself when an inline slot is free (no hand-off to a
worker); the rest, and all prefetch groups, go to the :class:`~.pool.FetchPool`, where on-demand
work runs first; a reader that needs a chunk a queued prefetch group holds promotes it. A group the
pool drops (closing) or whose run failed unexpectedly fails its waiters instead of leaving them
hanging. Internal to the pipeline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from ..errors import CacheError
from ..rafs.model import ChunkInfo
from .blob_state import BlobState
from .fetch_group import FetchGroup
from .inflight import InFlight
from .pool import FetchPool

__all__ = ["Dispatcher"]


class Dispatcher:
    """Makes fetch groups and runs them inline or on the pool; ``run`` fetches one group."""

    def __init__(self, pool: FetchPool, inflight: InFlight, blobs: Sequence[BlobState],
                 run: Callable[[FetchGroup], int]) -> None:
        self.pool = pool
        self._inflight = inflight
        self._blobs = blobs
        self._run = run
        self._inline_slots = threading.BoundedSemaphore(pool.workers)

    def make_groups(self, items: list[tuple[ChunkInfo, Future[bytes]]], priority: int,
                    limit: int) -> list[FetchGroup]:
        """Sort chunks by blob and offset and cut them into contiguous requests (planning lock held)."""
        items.sort(key=lambda it: (it[0].blob_index, it[0].compressed_offset))
        groups: list[FetchGroup] = []
        cur: FetchGroup | None = None
        inflight = self._inflight
        for c, fut in items:
            if (cur is None or c.blob_index != cur.blob.index or c.compressed_offset != cur.end
                    or c.compressed_offset + c.compressed_size - cur.start > limit):
                cur = FetchGroup(self._blobs[c.blob_index], priority)
                groups.append(cur)
            cur.chunks.append(c)
            cur.futures.append(fut)
            inflight.add((c.blob_index, c.compressed_offset), fut, cur)
        return groups

    def take_inline(self, groups: list[FetchGroup]) -> FetchGroup | None:
        """Take the first group for the caller to run itself when an inline slot is free."""
        if groups and self._inline_slots.acquire(blocking=False):
            return groups.pop(0)
        return None

    def run_inline(self, group: FetchGroup) -> None:
        """Run a group taken with :meth:`take_inline` on this thread."""
        try:
            self._run(group)
        finally:
            self._inline_slots.release()

    def submit(self, group: FetchGroup) -> Future[Any]:
        """Queue ``group`` on the pool (planning lock held); return the pool's future."""
        pf = self.pool.submit(lambda: self._run(group), group.priority)
        group.pool_future = pf
        pf.add_done_callback(lambda f: self._done(group, f))
        return pf

    def promote(self, groups: Sequence[FetchGroup]) -> None:
        """Move queued prefetch groups ahead: a reader waits for them."""
        for group in groups:
            if group.pool_future is not None:
                self.pool.promote(group.pool_future)

    def _done(self, group: FetchGroup, pf: Future[Any]) -> None:
        if pf.cancelled():
            exc: BaseException | None = CacheError("read cancelled: the image is being closed")
        else:
            exc = pf.exception()
        if exc is None:
            return
        group.fail_pending(exc)
        self._inflight.release(group)

    def close(self) -> None:
        """Stop the pool's workers (queued groups fail their waiters)."""
        self.pool.close()
