"""Decoding: split one ranged backend response into chunks, decompress and verify each.

A chunk that does not fit the response, does not decompress, or (with ``digest_validate``) does
not match its digest fails for its own readers only; a compressor or digester plugin bug becomes a
one-line :class:`~nydus_core.errors.IntegrityError`. Internal to the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import cast

from ..errors import IntegrityError, NydusError, plugin_errors
from ..rafs.chunkdata import check_chunk_data, decode_chunk
from ..rafs.model import ChunkInfo
from ..rafs.zran_read import ZranBlob
from .fetch_group import FetchGroup

__all__ = ["decode_group", "decode_zran_group"]


def decode_group(group: FetchGroup, raw: bytes, *, validate: bool
                 ) -> Iterator[tuple[ChunkInfo, Future[bytes], bytes | NydusError]]:
    """Yield ``(chunk, its readers' future, its bytes or its error)`` for each chunk of ``group``,
    as each is decoded (so the first chunk's readers need not wait for the last one)."""
    blob = group.blob
    start = group.start
    whole = len(group.chunks) == 1
    with memoryview(raw) as mv:
        for c, fut in zip(group.chunks, group.futures, strict=True):
            lo = c.compressed_offset - start
            try:
                if lo + c.compressed_size > len(raw):
                    raise IntegrityError(
                        f"blob {blob.blob_id} chunk {c.index} (compressed offset {c.compressed_offset}): "
                        f"blob ends at {start + len(raw)}, before the chunk's end"
                    )
                # a slice of the response, not a copy: compressors take any bytes-like object
                # (Compressor.decompress), which the annotation cannot say without a Buffer type
                piece = raw if whole else cast(bytes, mv[lo:lo + c.compressed_size])
                with plugin_errors(IntegrityError, f"blob {blob.blob_id} chunk {c.index}: cannot decode"):
                    data = decode_chunk(piece, c, blob.compressor, blob.digester,
                                        validate=validate, blob_id=blob.blob_id)
            except NydusError as exc:
                yield c, fut, exc
                continue
            yield c, fut, data


def decode_zran_group(group: FetchGroup, raw: bytes, start: int, zran: ZranBlob, *, validate: bool,
                      held: dict[int, bytes] | None = None
                      ) -> Iterator[tuple[ChunkInfo, Future[bytes], bytes | NydusError]]:
    """Like :func:`decode_group` for a ZRAN blob: ``raw`` is the layer from ``start`` (the first
    context's ``in_offset``); chunks of one context are inflated together (or come from the blob's
    context cache, ``held`` being what the fetch planning took from it), then each is verified."""
    blob = group.blob
    decoded = zran.decode(raw, start, group.chunks, blob.compressor, blob.blob_id, blob.zran_contexts,
                          held)
    for (c, data), fut in zip(decoded, group.futures, strict=True):
        if isinstance(data, NydusError):
            yield c, fut, data
            continue
        result: bytes | NydusError
        try:
            with plugin_errors(IntegrityError, f"blob {blob.blob_id} chunk {c.index}: cannot verify"):
                result = check_chunk_data(data, c, blob.digester, validate=validate, blob_id=blob.blob_id)
        except NydusError as exc:
            result = exc
        yield c, fut, result
