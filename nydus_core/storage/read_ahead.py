"""Read-ahead: the chunks after a read's last miss that ride along in the same backend request.

Upstream's user-IO amplification: a miss is extended with the blob's next chunks, up to
``amplify_io`` compressed bytes (0 turns it off). Once the compressed-order index is built
(:class:`~.chunk_order.CompressedOrder`, RAFS v6 with a cache) those are the blob's next chunks
whichever files they belong to; until then, the reader's own next chunks. Only chunks that are
contiguous in the blob and neither cached nor in flight are taken. Internal to the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future

from ..rafs.model import ChunkInfo
from .blob_state import BlobState
from .chunk_order import CompressedOrder
from .inflight import InFlight

__all__ = ["ReadAhead"]

#: Most chunks looked at after a miss (bounds the work under the planning lock).
_SCAN = 1024


class ReadAhead:
    """Picks read-ahead chunks for on-demand fetches."""

    def __init__(self, amplify_io: int, order: CompressedOrder, inflight: InFlight,
                 blobs: Sequence[BlobState]) -> None:
        self.amplify_io = max(0, int(amplify_io))
        self._order = order
        self._inflight = inflight
        self._blobs = blobs

    def extend(self, mine: list[tuple[ChunkInfo, Future[bytes]]],
               follow: Iterable[ChunkInfo]) -> list[tuple[ChunkInfo, Future[bytes]]]:
        """Return chunks to fetch after the last of ``mine`` (planning lock held)."""
        if not self.amplify_io:
            return []
        last = mine[-1][0]
        bi = last.blob_index
        blob = self._blobs[bi]
        budget = self.amplify_io - sum(c.compressed_size for c, _ in mine if c.blob_index == bi)
        end = last.compressed_offset + last.compressed_size
        taken = {(c.blob_index, c.compressed_offset) for c, _ in mine}
        extra: list[tuple[ChunkInfo, Future[bytes]]] = []
        order = self._order.get(bi)
        if order is not None:  # the blob's next chunks, whichever files they belong to
            follow = order.iter_from(order.first_at(end), _SCAN)
        inflight = self._inflight
        for c in follow:
            if c.blob_index != bi or c.compressed_offset != end or c.compressed_size > budget:
                break
            key = (bi, end)
            if key in taken or key in inflight or blob.is_ready(c):
                break
            taken.add(key)
            extra.append((c, Future()))
            budget -= c.compressed_size
            end += c.compressed_size
        return extra
