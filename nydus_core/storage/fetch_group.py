"""A fetch group: chunks of one blob, adjacent in the blob, fetched with one ranged backend request.

Internal to the pipeline.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from ..rafs.model import ChunkInfo
from .blob_state import BlobState

__all__ = ["FetchGroup"]


class FetchGroup:
    """Chunks of one blob fetched with one ranged backend request, and their readers' futures."""

    __slots__ = ("blob", "chunks", "futures", "pool_future", "priority")

    def __init__(self, blob: BlobState, priority: int) -> None:
        self.blob = blob
        self.chunks: list[ChunkInfo] = []
        self.futures: list[Future[bytes]] = []
        #: the pool job running this group, once submitted
        self.pool_future: Future[Any] | None = None
        self.priority = priority

    def fail_pending(self, exc: BaseException) -> None:
        """Fail the readers still waiting (the request failed, or was dropped at close)."""
        for fut in self.futures:
            if not fut.done():
                fut.set_exception(exc)

    @property
    def start(self) -> int:
        """Compressed offset of the first chunk."""
        return self.chunks[0].compressed_offset

    @property
    def end(self) -> int:
        """Compressed offset just past the last chunk."""
        c = self.chunks[-1]
        return c.compressed_offset + c.compressed_size
