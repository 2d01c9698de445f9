"""Reading chunks of a ZRAN blob: locate each chunk's inflate context, decode runs of chunks.

Shared by the read pipeline and the tools' chunk readers. A ZRAN blob's blob.meta lives in its
separate RAFS blob (``blob_meta_digest``, rafs-format.md §6.8): :func:`load_zran_blob` reads it
through a ``read(offset, length)`` of that blob. Decoding needs the layer bytes from the context's
``in_offset`` to the end of the last chunk wanted; the compressor plugin inflates
(:meth:`~nydus_core.interfaces.Compressor.decompress_from`) and each chunk is then verified like
any chunk (:func:`~nydus_core.rafs.chunkdata.check_chunk_data`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ..errors import FormatError, IntegrityError, NydusError, plugin_errors
from ..interfaces import Compressor
from .blobmeta import read_blob_meta_full
from .constants import BlobFeatures
from .model import BlobInfo, ChunkInfo
from .zran import ZranTable

__all__ = ["ZranBlob", "is_zran", "load_zran_blob", "meta_blob_id"]


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

    def decode(self, raw: bytes, start: int, chunks: Sequence[ChunkInfo], compressor: Compressor,
               blob_id: str) -> Iterator[tuple[ChunkInfo, bytes | NydusError]]:
        """Yield each chunk of ``chunks`` (in layer order) with its unverified bytes or its error;
        ``raw`` holds the layer from offset ``start``. Chunks of one context are inflated together."""
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
            end = max(c.compressed_offset + c.compressed_size for c in run)
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
