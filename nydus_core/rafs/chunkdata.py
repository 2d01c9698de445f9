"""Turn a chunk's stored bytes into file data (rafs-format.md §6.1).

:func:`decode_chunk` is what every reader of chunk data uses (the storage pipeline, the tools):
decompress, check the length, verify the digest (or CRC32C). The compressor and digester are passed
in; readers that look them up live above this package (``nydus_core.tools.chunkreader``).
"""

from __future__ import annotations

from ..errors import IntegrityError, NydusError, UnsupportedFeatureError, plugin_errors
from ..interfaces import Compressor, Digester
from .constants import ChunkFlags
from .crc32c import crc32c
from .model import ChunkInfo


def _where(blob_id: str, chunk: ChunkInfo) -> str:
    return f"blob {blob_id}: chunk {chunk.index} at offset {chunk.compressed_offset}"


def decode_chunk(
    raw: bytes,
    chunk: ChunkInfo,
    compressor: Compressor,
    digester: Digester,
    *,
    validate: bool,
    blob_id: str,
) -> bytes:
    """Return the uncompressed bytes of ``chunk`` from its stored bytes ``raw``.

    Decompresses when the chunk is COMPRESSED, requires exactly ``uncompressed_size`` bytes, and
    with ``validate`` checks the digest (CRC32C when HAS_CRC32). Raises
    :class:`~nydus_core.errors.IntegrityError` naming the blob and chunk on any mismatch.
    """
    flags = chunk.flags
    if flags & (ChunkFlags.ENCRYPTED | ChunkFlags.BATCH):
        kind = "encryption" if flags & ChunkFlags.ENCRYPTED else "batch chunks"
        raise UnsupportedFeatureError(f"{_where(blob_id, chunk)}: {kind} is not supported")
    if len(raw) != chunk.compressed_size:
        raise IntegrityError(
            f"{_where(blob_id, chunk)}: got {len(raw)} bytes, expected {chunk.compressed_size} "
            "(truncated blob?)"
        )
    if flags & ChunkFlags.COMPRESSED:
        with plugin_errors(IntegrityError, f"{_where(blob_id, chunk)}: cannot decompress",
                           reword=NydusError):
            data = compressor.decompress(raw, chunk.uncompressed_size)
    else:
        data = raw
    return check_chunk_data(data, chunk, digester, validate=validate, blob_id=blob_id)


def check_chunk_data(data: bytes, chunk: ChunkInfo, digester: Digester, *, validate: bool,
                     blob_id: str) -> bytes:
    """Return ``data`` (the uncompressed bytes of ``chunk``) after checking its length and, with
    ``validate``, its digest (CRC32C when HAS_CRC32); IntegrityError naming blob and chunk."""
    flags = chunk.flags
    if len(data) != chunk.uncompressed_size:
        raise IntegrityError(
            f"{_where(blob_id, chunk)}: {len(data)} bytes after decompression, "
            f"expected {chunk.uncompressed_size}"
        )
    if validate:
        if flags & ChunkFlags.HAS_CRC32:
            if crc32c(data) != chunk.crc32:
                raise IntegrityError(f"{_where(blob_id, chunk)}: CRC32C mismatch")
        elif digester.digest(data) != chunk.block_id:
            raise IntegrityError(f"{_where(blob_id, chunk)}: digest mismatch")
    return bytes(data)
