"""Load-time checks and decodings shared by the v5 and v6 readers (rafs-format.md §2, §4.10, §5.14)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..errors import UnsupportedFeatureError, UsageError
from .constants import (
    CHUNK_INFO_SIZE,
    COMPRESSION_FLAG_ORDER,
    COMPRESSOR_LZ4_BLOCK,
    DIGEST_FLAG_ORDER,
    DIGESTER_BLAKE3,
    MAX_CHUNK_SIZE,
    UNSUPPORTED_BLOB_FEATURES,
    BlobFeatures,
    ChunkFlags,
    SuperFlags,
)
from .mapped import MappedBootstrap
from .model import BlobInfo, ChunkInfo

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from ..interfaces import Compressor, Digester

KNOWN_COMPRESSORS = frozenset({0, 1, 2, 3})
KNOWN_DIGESTERS = frozenset({0, 1})
KNOWN_CHUNK_FLAGS = int(
    ChunkFlags.COMPRESSED | ChunkFlags.HOLECHUNK | ChunkFlags.ENCRYPTED | ChunkFlags.BATCH
    | ChunkFlags.HAS_CRC32
)
_BAD_CHUNK_FLAGS = ~KNOWN_CHUNK_FLAGS | int(ChunkFlags.ENCRYPTED | ChunkFlags.BATCH)
#: A stored chunk is never larger than this (blob.meta v1 records sizes up to 2^24).
MAX_STORED_CHUNK = MAX_CHUNK_SIZE


def recorded_id(plugin: Compressor | Digester, kind: str) -> int:
    """Return the upstream on-disk id a ``kind`` plugin (compressor, digester) records in an image.

    UsageError when it has none: such an algorithm cannot be written into a RAFS image.
    """
    if plugin.algorithm_id is None:
        raise UsageError(
            f"{kind} '{plugin.name}' has no upstream on-disk id and cannot be used in a RAFS image"
        )
    return plugin.algorithm_id


def algorithms_from_flags(flags: int) -> tuple[int, int]:
    """Return ``(compressor id, digester id)`` from RafsSuperFlags, in upstream's decode order (§2.2).

    No compressor bit means lz4_block and no hash bit means blake3, as upstream decodes them.
    """
    compressor = next((algo for bit, algo in COMPRESSION_FLAG_ORDER if flags & bit), COMPRESSOR_LZ4_BLOCK)
    digester = next((algo for bit, algo in DIGEST_FLAG_ORDER if flags & bit), DIGESTER_BLAKE3)
    return compressor, digester


def check_super_flags_supported(m: MappedBootstrap, flags: int) -> None:
    """Raise UnsupportedFeatureError for tarfs mode or encrypted images."""
    if flags & SuperFlags.TARFS_MODE:
        raise UnsupportedFeatureError(f"{m.path}: image uses tarfs mode, which nydus-py does not support")
    if flags & SuperFlags.ENCRYPTION_ASE_128_XTS:
        raise UnsupportedFeatureError(f"{m.path}: image uses encryption, which nydus-py does not support")


def check_blob_supported(m: MappedBootstrap, blob: BlobInfo, *, v6: bool = False) -> None:
    """Raise UnsupportedFeatureError if ``blob`` uses a feature nydus-py does not read.

    ZRAN and SEPARATE (``*-ref`` images) exist in RAFS v6 only (``v6``).
    """
    if not v6:
        refs = ((BlobFeatures.ZRAN, "zran (targz-ref)"), (BlobFeatures.SEPARATE, "a separate data blob"))
        for ref_bit, name in refs:
            if blob.features & ref_bit:
                raise UnsupportedFeatureError(f"{m.path}: blob {blob.blob_id} uses {name}, which RAFS v5 "
                                              "cannot have")
    for bit, name in UNSUPPORTED_BLOB_FEATURES:
        if blob.features & bit:
            raise UnsupportedFeatureError(
                f"{m.path}: blob {blob.blob_id} uses {name}, which nydus-py does not support"
            )
    if blob.cipher_algo:
        raise UnsupportedFeatureError(
            f"{m.path}: blob {blob.blob_id} uses encryption, which nydus-py does not support"
        )


def decode_blob_id(m: MappedBootstrap, raw: bytes, where: str) -> str:
    """Decode a blob id (ASCII, NUL-terminated or not); reject empty or unsafe ids."""
    raw = raw.split(b"\0", 1)[0]
    if not raw or len(raw) > 255 or any(c <= 0x20 or c >= 0x7F or c == 0x2F for c in raw) or raw in (
        b".",
        b"..",
    ):
        raise m.error(f"{where}: invalid blob id {raw[:80]!r}")
    return raw.decode("ascii")


def check_chunk(
    m: MappedBootstrap, c: ChunkInfo, blobs: list[BlobInfo], chunk_size: int, where: str, *args: object
) -> None:
    """Check one chunk record against the blob table and chunk size (FormatError on violation).

    ``where`` names the record; with ``args`` it is a ``str.format`` template, formatted only on failure.
    """
    if c.blob_index < len(blobs) and not c.flags & _BAD_CHUNK_FLAGS:
        blob = blobs[c.blob_index]
        if (0 < c.uncompressed_size <= chunk_size and 0 < c.compressed_size <= MAX_STORED_CHUNK
                and (not blob.compressed_size
                     or c.compressed_offset + c.compressed_size <= blob.compressed_size)
                and (not blob.uncompressed_size
                     or c.uncompressed_offset + c.uncompressed_size <= blob.uncompressed_size)
                and (not blob.chunk_count or c.index < blob.chunk_count)):
            return
    _chunk_error(m, c, blobs, chunk_size, where.format(*args) if args else where)


_CHECKED_FIELDS = struct.Struct("<32xIIIIQQ8xI4x")  # what check_chunk looks at in an 80-byte record


def valid_chunk_records(table: Buffer, blobs: list[BlobInfo], chunk_size: int) -> bytearray:
    """Return one byte per 80-byte record of ``table``: 1 where :func:`check_chunk` would pass the
    record (the same predicate, in one pass without decoding records into objects)."""
    limits = [(b.compressed_size, b.uncompressed_size, b.chunk_count) for b in blobs]
    nblobs = len(blobs)
    valid = bytearray(memoryview(table).nbytes // CHUNK_INFO_SIZE)
    for pos, (bi, flags, csize, usize, coff, uoff, idx) in enumerate(_CHECKED_FIELDS.iter_unpack(table)):
        if (bi < nblobs and not flags & _BAD_CHUNK_FLAGS and 0 < usize <= chunk_size
                and 0 < csize <= MAX_STORED_CHUNK):
            bcsize, busize, bcount = limits[bi]
            if ((not bcsize or coff + csize <= bcsize) and (not busize or uoff + usize <= busize)
                    and (not bcount or idx < bcount)):
                valid[pos] = 1
    return valid


def _chunk_error(
    m: MappedBootstrap, c: ChunkInfo, blobs: list[BlobInfo], chunk_size: int, where: str
) -> None:
    if c.blob_index >= len(blobs):
        raise m.error(f"{where}: blob index {c.blob_index} out of range ({len(blobs)} blobs)")
    if c.flags & ~KNOWN_CHUNK_FLAGS:
        raise m.error(f"{where}: unknown chunk flags {c.flags:#x}")
    if c.flags & (ChunkFlags.ENCRYPTED | ChunkFlags.BATCH):
        kind = "encryption" if c.flags & ChunkFlags.ENCRYPTED else "batch chunks"
        raise UnsupportedFeatureError(
            f"{m.path}: {where}: chunk uses {kind}, which nydus-py does not support"
        )
    if not 0 < c.uncompressed_size <= chunk_size:
        raise m.error(f"{where}: uncompressed size {c.uncompressed_size} is not in 1..{chunk_size}")
    if not 0 < c.compressed_size <= MAX_STORED_CHUNK:
        raise m.error(f"{where}: compressed size {c.compressed_size} is not in 1..{MAX_STORED_CHUNK}")
    blob = blobs[c.blob_index]
    if blob.compressed_size and c.compressed_offset + c.compressed_size > blob.compressed_size:
        raise m.error(
            f"{where}: compressed range {c.compressed_offset}+{c.compressed_size} lies outside blob "
            f"{blob.blob_id} ({blob.compressed_size} bytes)"
        )
    if blob.uncompressed_size and c.uncompressed_offset + c.uncompressed_size > blob.uncompressed_size:
        raise m.error(
            f"{where}: uncompressed range {c.uncompressed_offset}+{c.uncompressed_size} lies outside "
            f"blob {blob.blob_id} ({blob.uncompressed_size} bytes)"
        )
    raise m.error(f"{where}: chunk index {c.index} out of range ({blob.chunk_count} chunks in blob)")
