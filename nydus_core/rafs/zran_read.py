"""Reading chunks of a ZRAN blob: locate each chunk's inflate context, decode runs of chunks.

Shared by the read pipeline and the tools' chunk readers. A ZRAN blob's blob.meta lives in its
separate RAFS blob (``blob_meta_digest``, rafs-format.md §6.8): :func:`load_zran_blob` reads it
through a ``read(offset, length)`` of that blob. Decoding needs the layer bytes from the context's
``in_offset`` to the end of the last chunk wanted; the compressor plugin inflates
(:meth:`~nydus_core.interfaces.Compressor.decompress_from`) and each chunk is then verified like
any chunk (:func:`~nydus_core.rafs.chunkdata.check_chunk_data`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..errors import FormatError, IntegrityError, NydusError, plugin_errors
from ..interfaces import Compressor
from .blobmeta import read_blob_meta_full
from .constants import BlobFeatures
from .model import BlobInfo, ChunkInfo
from .zran import ZranTable

__all__ = ["ContextCache", "ZranBlob", "is_zran", "load_zran_blob", "meta_blob_id"]

#: Inflated context output a blob keeps (most recently used first out): about 16 contexts.
CONTEXT_CACHE_BYTES = 32 << 20


@dataclass
class ContextCache:
    """Recently inflated zran contexts of one blob: context index -> its output from the start.

    A container's reads touch a few files of each context; inflating a context once for all of
    them (instead of fetching and inflating its prefix again per file) is what keeps OCI-ref cold
    starts close to fully converted ones. Thread-safe; bounded by ``limit`` bytes.
    """

    limit: int = CONTEXT_CACHE_BYTES
    _data: OrderedDict[int, bytes] = field(default_factory=OrderedDict)
    _size: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, ctx: int, end: int) -> bytes | None:
        """The output of context ``ctx`` if at least ``end`` bytes of it are kept."""
        with self._lock:
            out = self._data.get(ctx)
            if out is None or len(out) < end:
                return None
            self._data.move_to_end(ctx)
            return out

    def put(self, ctx: int, out: bytes) -> None:
        """Keep ``out`` (output of context ``ctx`` from its start), evicting the oldest."""
        if len(out) > self.limit:
            return
        with self._lock:
            old = self._data.pop(ctx, None)
            if old is not None:
                self._size -= len(old)
                if len(old) > len(out):
                    out = old
            self._data[ctx] = out
            self._size += len(out)
            while self._size > self.limit and self._data:
                _k, v = self._data.popitem(last=False)
                self._size -= len(v)


def is_zran(blob: BlobInfo) -> bool:
    """Whether ``blob``'s chunks are ZRAN spans of a gzip layer."""
    return bool(blob.features & BlobFeatures.ZRAN)


def meta_blob_id(blob: BlobInfo) -> str:
    """Return the id of the separate RAFS blob holding ``blob``'s blob.meta (``*-ref`` images)."""
    if not any(blob.blob_meta_digest):
        raise FormatError(f"blob {blob.blob_id}: a *-ref blob without a recorded RAFS blob")
    return blob.blob_meta_digest.hex()


@dataclass(frozen=True, slots=True)
class ZranBlob:
    """The contexts of one ZRAN blob and where each of its chunks sits in them."""

    table: ZranTable
    contexts_of: Sequence[int]  # by chunk index
    offsets: Sequence[int]  # by chunk index: offset in the context's output

    def locate(self, chunk: ChunkInfo) -> tuple[int, int]:
        """Return ``(context index, offset in its output)`` of ``chunk``."""
        i = chunk.index
        if i >= len(self.contexts_of) or self.contexts_of[i] < 0:
            raise FormatError(f"chunk {i} has no zran context in the blob.meta")
        return self.contexts_of[i], self.offsets[i]

    def fetch_start(self, chunks: Sequence[ChunkInfo]) -> int:
        """Offset of the first layer byte decoding ``chunks`` needs."""
        return min(self.table.contexts[self.locate(c)[0]].in_offset for c in chunks)

    def fetch_span(self, chunks: Sequence[ChunkInfo], cache: ContextCache | None
                   ) -> tuple[int, int, dict[int, bytes]]:
        """The layer range to fetch for ``chunks``: the whole contexts of those the cache cannot
        serve (as upstream's nydusd fetches them), ``(0, 0)`` when it serves them all; and the
        cached outputs used (held for :meth:`decode`, so an eviction in between cannot hurt)."""
        start, end = -1, 0
        held: dict[int, bytes] = {}
        for c in chunks:
            ctx_index, zoff = self.locate(c)
            kept = cache.get(ctx_index, zoff + c.uncompressed_size) if cache is not None else None
            if kept is not None:
                held[ctx_index] = kept
                continue
            ctx = self.table.contexts[ctx_index]
            start = ctx.in_offset if start < 0 else min(start, ctx.in_offset)
            end = max(end, ctx.in_offset + ctx.in_len, c.compressed_offset + c.compressed_size)
        return (0, 0, held) if start < 0 else (start, end, held)

    def decode(self, raw: bytes, start: int, chunks: Sequence[ChunkInfo], compressor: Compressor,
               blob_id: str, cache: ContextCache | None = None, held: dict[int, bytes] | None = None
               ) -> Iterator[tuple[ChunkInfo, bytes | NydusError]]:
        """Yield each chunk of ``chunks`` (in layer order) with its unverified bytes or its error;
        ``raw`` holds the layer from offset ``start``. Chunks of one context are inflated together;
        with ``cache``, contexts are taken from it and what is inflated (the whole context when
        ``raw`` holds it) is kept there; ``held`` are outputs :meth:`fetch_span` took from it."""
        i = 0
        while i < len(chunks):
            ctx_index, _ = self.locate(chunks[i])
            j = i
            while j + 1 < len(chunks) and self.locate(chunks[j + 1])[0] == ctx_index:
                j += 1
            run = chunks[i:j + 1]
            i = j + 1
            ctx = self.table.contexts[ctx_index]
            first = min(self.locate(c)[1] for c in run)
            last = max(self.locate(c)[1] + c.uncompressed_size for c in run)
            kept = (held or {}).get(ctx_index)
            if kept is None or len(kept) < last:
                kept = cache.get(ctx_index, last) if cache is not None else None
            if kept is not None:
                for c in run:
                    off = self.locate(c)[1]
                    yield c, kept[off:off + c.uncompressed_size]
                continue
            end = max(c.compressed_offset + c.compressed_size for c in run)
            if cache is not None:
                if ctx.in_offset + ctx.in_len - start <= len(raw) and last <= ctx.out_len:
                    end, last = max(end, ctx.in_offset + ctx.in_len), ctx.out_len  # the whole context
                first = 0  # keep the context's output from its start
            lo, hi = ctx.in_offset - start, end - start
            where = f"blob {blob_id}: chunks {run[0].index}..{run[-1].index} (zran context {ctx_index})"
            try:
                if lo < 0 or hi > len(raw) or hi <= lo:
                    raise IntegrityError(f"{where}: layer bytes {ctx.in_offset}..{end} were not fetched "
                                         f"(have {start}..{start + len(raw)}; truncated layer?)")
                with plugin_errors(IntegrityError, f"{where}: cannot decode", reword=NydusError):
                    data = compressor.decompress_from(raw[lo:hi], self.table.resume_point(ctx_index),
                                                      first, last - first)
                if len(data) != last - first:
                    raise IntegrityError(f"{where}: decoded {len(data)} bytes, expected {last - first}")
                if cache is not None:
                    cache.put(ctx_index, data)
            except NydusError as exc:
                for c in run:
                    yield c, exc
                continue
            for c in run:
                off = self.locate(c)[1] - first
                yield c, data[off:off + c.uncompressed_size]


def load_zran_blob(read_meta: Callable[[int, int], bytes], blob: BlobInfo,
                   compressor_for: Callable[[int], Compressor]) -> ZranBlob:
    """Read and decode the blob.meta of ZRAN ``blob`` from its RAFS blob (``read_meta``)."""
    where = f"blob {blob.blob_id}: blob.meta in RAFS blob {meta_blob_id(blob)}"
    _header, records, table = read_blob_meta_full(read_meta, blob, compressor_for=compressor_for,
                                                  where=where)
    if table is None:
        raise FormatError(f"{where}: the blob is ZRAN but its blob.meta has no zran contexts")
    contexts_of = [-1 if r.zran_context is None else r.zran_context for r in records]
    return ZranBlob(table, contexts_of, [r.zran_offset for r in records])
