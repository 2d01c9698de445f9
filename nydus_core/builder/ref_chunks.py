"""Chunk records of a ``*-ref`` build: chunks point into the original layer, nothing is copied.

:class:`RefChunkSink` takes the place of the blob writer. For a tar layer (``tar-ref``) a chunk is
the byte range of the file data inside the tar. For a gzip layer (``targz-ref``) it is ZRAN: the
layer is read through the gzip compressor's indexed stream, and each chunk gets an inflate context
(a resume point at a deflate block boundary, with its 32 KiB window) and its offset in that
context's output; its compressed range bounds the layer bytes needed to inflate up to its end
(rafs-format.md §6.8, "Building").
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BuildError
from ..interfaces import IndexedStream, ResumePoint
from ..rafs.constants import EROFS_BLOCK_SIZE, ChunkFlags, align_up
from ..rafs.model import ChunkInfo
from ..rafs.zran import ZranContext

__all__ = ["RefChunkSink"]

#: upstream's context rule (fixed parameters): a new context after this much compressed input...
CONTEXT_MIN_COMPRESSED = 512 * 1024
#: ...or when the context's output would pass this.
CONTEXT_MAX_OUTPUT = 2 << 20


@dataclass
class _Context:
    point: ResumePoint
    in_end: int
    out_end: int


class RefChunkSink:
    """Make chunk records pointing into the original layer (``add_chunk``, like a blob writer).

    ``indexed`` is the gzip layer's indexed stream (None for a plain tar). The caller says where
    each new chunk starts in the uncompressed layer with :meth:`at`.
    """

    def __init__(self, blob_index: int, chunk_size: int, indexed: IndexedStream | None) -> None:
        self.blob_index = blob_index
        self.chunk_size = chunk_size
        self.indexed = indexed
        self.chunks: list[ChunkInfo] = []
        #: per chunk: (context index, offset in the context's output), ZRAN only
        self.refs: list[tuple[int, int]] = []
        self._contexts: list[_Context] = []
        self._points: list[ResumePoint] = []
        self._progress: list[tuple[int, int]] = []
        self._offset = 0
        self._ucursor = 0

    def at(self, offset: int) -> None:
        """The next chunk starts at ``offset`` of the uncompressed layer (the tar)."""
        self._offset = offset

    @property
    def chunk_count(self) -> int:
        """Chunks recorded so far."""
        return len(self.chunks)

    @property
    def uncompressed_size(self) -> int:
        """Size of the blob's uncompressed layout (4 KiB aligned chunks)."""
        return self._ucursor

    def add_chunk(self, data: bytes, digest: bytes | None = None) -> ChunkInfo:
        """Record a new chunk of ``len(data)`` bytes at the current offset; return its record."""
        if digest is None:
            raise BuildError("a *-ref chunk needs its digest")
        n = len(data)
        start = self._offset
        if self.indexed is None:
            flags, coff, csize = 0, start, n
        else:
            flags = int(ChunkFlags.COMPRESSED)
            coff, csize = self._place_zran(start, n)
        info = ChunkInfo(digest, self.blob_index, flags, csize, n, coff, self._ucursor, 0, len(self.chunks))
        self._ucursor = align_up(self._ucursor + n, EROFS_BLOCK_SIZE)
        self.chunks.append(info)
        return info

    # -- ZRAN -------------------------------------------------------------------------------------

    def _place_zran(self, start: int, n: int) -> tuple[int, int]:
        assert self.indexed is not None
        self._points += self.indexed.take_points()
        self._progress += self.indexed.take_progress()
        points = self._points
        k = -1
        for i, p in enumerate(points):
            if p.out_offset > start:
                break
            k = i
        candidate = points[k] if k >= 0 else None
        if k > 0:
            del points[:k]  # later chunks start further on: the latest point so far dominates these
        ctx = self._contexts[-1] if self._contexts else None
        if candidate is not None and (ctx is None or (
                candidate.out_offset > ctx.point.out_offset
                and (candidate.in_offset - ctx.point.in_offset >= CONTEXT_MIN_COMPRESSED
                     or start + n - ctx.point.out_offset > CONTEXT_MAX_OUTPUT))):
            ctx = _Context(candidate, candidate.in_offset, candidate.out_offset)
            self._contexts.append(ctx)
        if ctx is None:
            raise BuildError(f"no gzip checkpoint before layer offset {start}")
        lower, upper = self._bounds(start, start + n)
        # Chunks of a blob get strictly increasing, touching compressed ranges (readers key chunks in
        # flight by compressed offset): each starts where the previous one ended, never before its
        # context. The range's end still bounds the input inflating up to the chunk's end needs.
        prev = self.chunks[-1] if self.chunks else None
        coff = max(ctx.point.in_offset, prev.compressed_offset + prev.compressed_size if prev else lower)
        end = max(upper, coff + 1)
        ctx.in_end = max(ctx.in_end, end)
        ctx.out_end = start + n
        self.refs.append((len(self._contexts) - 1, start - ctx.point.out_offset))
        return coff, end - coff

    def _bounds(self, lo: int, hi: int) -> tuple[int, int]:
        """Compressed offsets bounding the input that output ``[lo, hi)`` needs."""
        prog = self._progress
        lower = 0
        upper = None
        keep = 0
        for i, (out_n, in_n) in enumerate(prog):
            if out_n <= lo:
                lower = in_n
            if out_n <= hi:
                keep = i
            if out_n >= hi:
                upper = in_n
                break
        if upper is None:
            raise BuildError(f"layer offset {hi} was not inflated yet (internal error)")
        del prog[:keep]
        return lower, upper

    def contexts(self) -> tuple[list[ZranContext], list[bytes]]:
        """Return the contexts (on-disk records) and their dictionaries, in order."""
        out: list[ZranContext] = []
        dicts: list[bytes] = []
        dict_offset = 0
        for c in self._contexts:
            p = c.point
            out.append(ZranContext(p.in_offset, p.out_offset, dict_offset, c.in_end - p.in_offset,
                                   c.out_end - p.out_offset, len(p.window), p.byte if p.bits else 0, p.bits))
            dicts.append(p.window)
            dict_offset += len(p.window)
        return out, dicts
