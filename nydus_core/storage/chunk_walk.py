"""The one walk over a byte range laid out as chunks: what is cached, what is a hole, what is missing.

A file is its chunks at their ``file_offset``; a blob's uncompressed layout is its chunks at their
``uncompressed_offset``. :func:`plan_range` walks such a layout over ``[offset, end)`` once: bytes no
chunk covers read as zeros, cached chunk ranges are read from the blob cache (one ``pread`` each),
and the rest are listed as misses for the pipeline to fetch. Both ``ReadPipeline.read`` and
``ReadPipeline.read_if_cached`` (and their blob-range twins) go through it, so there is one chunk
walk for every kind of read. Internal to the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..rafs.model import ChunkInfo
from .blob_state import BlobState

__all__ = ["ChunkSequence", "Miss", "RangePlan", "fill", "join", "plan_range"]

Piece = bytes | memoryview


class ChunkSequence(Protocol):
    """Chunk records by position: a file's chunk list, or a blob's ``chunk_order.BlobChunks``."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> ChunkInfo: ...


#: ``(piece index, chunk, start in chunk, stop in chunk, position in the layout)`` of a missing chunk.
Miss = tuple[int, ChunkInfo, int, int, int]
#: ``(pieces, misses, hits)``: the read's pieces in order (data, zeros for holes, an empty
#: placeholder for each miss), its misses, and how many chunks came from the cache.
RangePlan = tuple[list[Piece], list[Miss], int]


def fill(pieces: list[Piece], misses: list[Miss], datas: Sequence[bytes]) -> None:
    """Put the fetched whole-chunk bytes ``datas`` (one per miss, in order) in their places."""
    for (pi, _c, cs, ce, _i), data in zip(misses, datas, strict=True):
        pieces[pi] = data if (cs == 0 and ce == len(data)) else memoryview(data)[cs:ce]


def join(pieces: list[Piece]) -> bytes:
    """Return the read's bytes (every miss filled)."""
    if len(pieces) == 1:
        p = pieces[0]
        return p if type(p) is bytes else bytes(p)
    return b"".join(pieces)


def plan_range(chunks: ChunkSequence, i: int, offset: int, end: int, blobs: Sequence[BlobState],
               starts: Sequence[int] | None, stop_at_miss: bool) -> RangePlan | None:
    """Walk ``chunks`` (sorted by position) over ``[offset, end)`` from chunk index ``i``.

    A chunk's position is ``starts[k]`` when ``starts`` is given, else its ``file_offset``.
    With ``stop_at_miss`` the walk gives up at the first chunk the cache does not hold and returns
    None (nothing is fetched or waited for).
    """
    pieces: list[Piece] = []
    misses: list[Miss] = []
    n = len(chunks)
    hits = 0
    pos = offset
    while pos < end:
        if i >= n:  # past the last chunk: zeros to the end
            pieces.append(bytes(end - pos))
            break
        c = chunks[i]
        at = c.file_offset if starts is None else starts[i]
        if at > pos:  # a hole: zeros up to the next chunk
            stop = min(end, at)
            pieces.append(bytes(stop - pos))
            pos = stop
            continue
        cs = pos - at
        ce = min(end - at, c.uncompressed_size)
        if ce <= cs:  # chunk shorter than its slot (corrupt or sparse record)
            i += 1
            continue
        data = blobs[c.blob_index].read_cached(c, cs, ce - cs)
        if data is None:
            if stop_at_miss:
                return None
            misses.append((len(pieces), c, cs, ce, i))
            pieces.append(b"")  # filled once fetched
        else:
            hits += 1
            pieces.append(data)
        pos = at + ce
        i += 1
    return pieces, misses, hits
