"""In-flight dedup: the chunks being fetched now, so concurrent readers of a chunk wait on one fetch.

:class:`InFlight` maps ``(blob index, compressed offset)`` to the future of the chunk's bytes and
the :class:`~.fetch_group.FetchGroup` fetching it. :meth:`InFlight.claim` sorts a read's chunks
into cached, already being fetched (wait on that fetch; promote it if it is queued prefetch work)
and new; :meth:`InFlight.unclaimed` picks a prefetch batch's new chunks. Its ``lock`` is the
pipeline's planning lock: looking chunks up, registering new ones and cutting them into groups
happen under it, so a chunk is never fetched twice at once. Internal to the pipeline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future

from ..rafs.model import ChunkInfo
from .blob_state import BlobState
from .fetch_group import FetchGroup
from .pool import ON_DEMAND

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

    def claim(self, chunks: Sequence[ChunkInfo], blobs: Sequence[BlobState]
              ) -> tuple[list[Future[bytes] | None], list[tuple[ChunkInfo, Future[bytes]]], list[FetchGroup]]:
        """Sort out the chunks of an on-demand read (lock held).

        Returns, for each chunk, the future of its bytes (``None`` when it is cached); the chunks
        nobody fetches yet, each with a new future, for the caller to fetch; and the queued
        prefetch groups holding chunks this read needs (to promote). A chunk listed twice shares
        one future.
        """
        futures: list[Future[bytes] | None] = [None] * len(chunks)
        mine: list[tuple[ChunkInfo, Future[bytes]]] = []
        promote: list[FetchGroup] = []
        seen: dict[ChunkKey, Future[bytes] | None] = {}
        entries = self._entries
        for k, c in enumerate(chunks):
            key = (c.blob_index, c.compressed_offset)
            if key in seen:
                futures[k] = seen[key]
                continue
            entry = entries.get(key)
            fut: Future[bytes] | None
            if entry is not None:
                fut, group = entry
                if group.priority != ON_DEMAND:
                    promote.append(group)
            elif blobs[c.blob_index].is_ready(c):
                fut = None
            else:
                fut = Future()
                mine.append((c, fut))
            seen[key] = fut
            futures[k] = fut
        return futures, mine, promote

    def unclaimed(self, chunks: Iterable[ChunkInfo], blobs: Sequence[BlobState]
                  ) -> list[tuple[ChunkInfo, Future[bytes]]]:
        """Return the chunks of a prefetch batch that are neither cached nor in flight, once each,
        with a new future each (lock held)."""
        out: list[tuple[ChunkInfo, Future[bytes]]] = []
        seen: set[ChunkKey] = set()
        entries = self._entries
        for c in chunks:
            key = (c.blob_index, c.compressed_offset)
            if key in seen or key in entries or blobs[c.blob_index].is_ready(c):
                continue
            seen.add(key)
            out.append((c, Future()))
        return out

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
