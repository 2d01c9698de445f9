"""In-flight dedup: the chunks being fetched now, so concurrent readers of a chunk wait on one fetch.

:class:`InFlight` maps ``(blob index, compressed offset)`` to the future of the chunk's bytes and
the :class:`~.fetch_group.FetchGroup` fetching it. Its ``lock`` is the pipeline's planning lock:
looking chunks up, registering new ones and cutting them into groups happen under it, so a chunk is
never fetched twice at once. Internal to the pipeline.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from .fetch_group import FetchGroup

__all__ = ["ChunkKey", "InFlight"]

ChunkKey = tuple[int, int]


class InFlight:
    """The table of chunks being fetched, with the lock that guards fetch planning."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._quiet = threading.Condition(self.lock)
        self._entries: dict[ChunkKey, tuple[Future[bytes], FetchGroup]] = {}
        #: set (under ``lock``) when the pipeline closes: nothing new may be registered
        self.closed = False

    def get(self, key: ChunkKey) -> tuple[Future[bytes], FetchGroup] | None:
        """Return the future and group fetching ``key``, or None (lock held)."""
        return self._entries.get(key)

    def __contains__(self, key: ChunkKey) -> bool:
        return key in self._entries

    def add(self, key: ChunkKey, fut: Future[bytes], group: FetchGroup) -> None:
        """Register ``key`` as being fetched by ``group`` (lock held)."""
        self._entries[key] = (fut, group)

    def release(self, group: FetchGroup) -> None:
        """Forget the chunks ``group`` registered (its readers have their results)."""
        entries = self._entries
        with self.lock:
            for c, fut in zip(group.chunks, group.futures, strict=True):
                key = (c.blob_index, c.compressed_offset)
                entry = entries.get(key)
                if entry is not None and entry[0] is fut:
                    del entries[key]
            if not entries:
                self._quiet.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is in flight; False on timeout."""
        with self.lock:
            return self._quiet.wait_for(lambda: not self._entries, timeout)
