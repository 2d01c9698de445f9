"""Blob meta ("blob.meta"): the 4 KiB header and the chunk-info array of a v6 data blob (§6.2).

The chunk-info (CI) array sits at ``ci_offset`` of the blob, compressed with ``ci_compressor`` when
that made it smaller, and is immediately followed by the header. Everything here decodes from bytes;
:func:`read_blob_meta` fetches both with a ``read(offset, length)`` callable so it works on local files
and backends alike.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import FormatError, IntegrityError, NydusError, UnsupportedFeatureError, plugin_errors
from ..interfaces import Compressor
from .constants import (
    BLOB_META_HEADER_SIZE,
    BLOB_META_MAGIC,
    COMPRESSOR_NONE,
    MAX_CHUNK_SIZE,
    UNSUPPORTED_BLOB_FEATURES,
    BlobFeatures,
)
from .model import BlobInfo
from .zran import ZranTable, parse_zran_area

_REFUSED = UNSUPPORTED_BLOB_FEATURES
_HEADER = struct.Struct("<IIIIQQQQQI")
_MAGIC2_OFFSET = BLOB_META_HEADER_SIZE - 4
_V1 = struct.Struct("<QQ")
_V2 = struct.Struct("<QQQ")

# Chunk-info v2 flag byte (bits 56..63 of uncomp_info).
CI_V2_COMPRESSED = 0x01
CI_V2_ZRAN = 0x02
CI_V2_BATCH = 0x04
CI_V2_ENCRYPTED = 0x08
CI_V2_HAS_CRC32 = 0x10


@dataclass(frozen=True, slots=True)
class BlobMetaHeader:
    """``BlobCompressionContextHeader`` (4096 bytes)."""

    features: int
    ci_compressor: int
    ci_entries: int
    ci_offset: int
    ci_compressed_size: int
    ci_uncompressed_size: int
    zran_offset: int
    zran_size: int
    zran_count: int

    def check_against(self, blob: BlobInfo, *, where: str = "blob.meta") -> None:
        """Raise FormatError naming the field if the header disagrees with the bootstrap's blob entry."""
        pairs = (
            ("features", self.features, blob.features),
            ("ci_compressor", self.ci_compressor, blob.ci_compressor),
            ("ci_entries", self.ci_entries, blob.chunk_count),
            ("ci_offset", self.ci_offset, blob.ci_offset),
            ("ci_compressed_size", self.ci_compressed_size, blob.ci_compressed_size),
            ("ci_uncompressed_size", self.ci_uncompressed_size, blob.ci_uncompressed_size),
        )
        for name, ours, theirs in pairs:
            if ours != theirs:
                raise FormatError(
                    f"{where}: header {name} {ours:#x} differs from the bootstrap's {theirs:#x}"
                )


@dataclass(frozen=True, slots=True)
class BlobChunkMeta:
    """One chunk-info record of the blob meta (v1 16-byte or v2 24-byte form)."""

    index: int
    compressed_offset: int
    compressed_size: int
    uncompressed_offset: int
    uncompressed_size: int
    is_compressed: bool
    crc32: int | None = None  # v2 with HAS_CRC32 only
    zran_context: int | None = None  # v2 ZRAN chunks: index of their inflate context
    zran_offset: int = 0  # v2 ZRAN chunks: offset of the chunk in that context's output


def parse_blob_meta_header(data: bytes, *, where: str = "blob.meta") -> BlobMetaHeader:
    """Decode and check the 4096-byte blob meta header."""
    if len(data) != BLOB_META_HEADER_SIZE:
        raise FormatError(f"{where}: header is {len(data)} bytes, expected {BLOB_META_HEADER_SIZE}")
    (magic, features, ci_compressor, ci_entries, ci_offset, ci_csize, ci_usize, zran_offset, zran_size,
     zran_count) = _HEADER.unpack_from(data, 0)
    magic2 = struct.unpack_from("<I", data, _MAGIC2_OFFSET)[0]
    if magic != BLOB_META_MAGIC or magic2 != BLOB_META_MAGIC:
        raise FormatError(f"{where}: bad blob meta magic ({magic:#x}, {magic2:#x})")
    if ci_csize > ci_usize:
        raise FormatError(f"{where}: compressed chunk-info size {ci_csize} exceeds uncompressed {ci_usize}")
    return BlobMetaHeader(features, ci_compressor, ci_entries, ci_offset, ci_csize, ci_usize, zran_offset,
                          zran_size, zran_count)


def decode_chunk_info_array(
    data: bytes,
    header: BlobMetaHeader,
    *,
    compressor: Compressor | None = None,
    blob: BlobInfo | None = None,
    where: str = "blob.meta",
) -> list[BlobChunkMeta]:
    """Decode the (possibly compressed) CI array ``data`` described by ``header``.

    ``compressor`` is needed when ``header.ci_compressor`` is not none. With ``blob``, every record is
    checked to lie inside the blob's compressed and uncompressed sizes. ZRAN chunk records carry
    their context index and offset; :func:`decode_blob_meta` also returns the contexts.
    """
    return decode_blob_meta(data, header, compressor=compressor, blob=blob, where=where)[0]


def decode_blob_meta(
    data: bytes,
    header: BlobMetaHeader,
    *,
    compressor: Compressor | None = None,
    blob: BlobInfo | None = None,
    where: str = "blob.meta",
) -> tuple[list[BlobChunkMeta], ZranTable | None]:
    """Decode the CI data: the chunk records and, for a ZRAN blob, its contexts and dictionaries."""
    for bit, name in _REFUSED:
        if header.features & bit:
            raise UnsupportedFeatureError(f"{where}: blob uses {name}, which nydus-py does not support")
    if len(data) != header.ci_compressed_size:
        raise FormatError(
            f"{where}: chunk-info array is {len(data)} bytes, expected {header.ci_compressed_size}"
        )
    if header.ci_compressor != COMPRESSOR_NONE:
        if compressor is None:
            raise FormatError(f"{where}: chunk-info array is compressed but no compressor was given")
        with plugin_errors(IntegrityError, f"{where}: chunk-info array cannot be decompressed",
                           reword=NydusError):
            data = compressor.decompress(data, header.ci_uncompressed_size)
    if len(data) != header.ci_uncompressed_size:
        raise FormatError(
            f"{where}: chunk-info array is {len(data)} bytes, expected {header.ci_uncompressed_size}"
        )
    v2 = bool(header.features & BlobFeatures.CHUNK_INFO_V2)
    zran = bool(header.features & BlobFeatures.ZRAN)
    record = _V2 if v2 else _V1
    array = record.size * header.ci_entries
    table: ZranTable | None = None
    if zran:
        if not v2:
            raise FormatError(f"{where}: a zran blob must use chunk info v2")
        z_off, z_size, z_count = header.zran_offset, header.zran_size, header.zran_count
        if (z_off != array or z_count > header.ci_entries or 40 * z_count > z_size
                or z_off + z_size != header.ci_uncompressed_size):
            raise FormatError(
                f"{where}: zran area {z_off:#x}+{z_size:#x} ({z_count} contexts) does not follow the "
                f"{header.ci_entries} chunk records in {header.ci_uncompressed_size:#x} bytes"
            )
        table = parse_zran_area(data[z_off:z_off + z_size], z_count, where=where)
    elif header.ci_uncompressed_size != array:
        raise FormatError(
            f"{where}: chunk-info array of {header.ci_uncompressed_size} bytes for {header.ci_entries} "
            f"chunks of {record.size} bytes"
        )
    out: list[BlobChunkMeta] = []
    if v2:
        for i, (u, c, extra) in enumerate(_V2.iter_unpack(data[:array])):
            flags = u >> 56
            if flags & (CI_V2_BATCH | CI_V2_ENCRYPTED):
                raise UnsupportedFeatureError(f"{where}: chunk {i} uses batch or encryption")
            usize = ((u >> 32) & 0xFF_FFFF) + 1
            ctx: int | None = None
            if flags & CI_V2_ZRAN:
                ctx = extra >> 32
                if table is None or ctx >= len(table.contexts):
                    raise FormatError(f"{where}: chunk {i} names zran context {ctx}, which does not exist")
            out.append(BlobChunkMeta(
                i, c & 0xFF_FFFF_FFFF, c >> 40, (u & 0xFFFF_FFFF) << 12, usize,
                bool(flags & CI_V2_COMPRESSED),
                (extra & 0xFFFF_FFFF) if flags & CI_V2_HAS_CRC32 and ctx is None else None,
                ctx, (extra & 0xFFFF_FFFF) if ctx is not None else 0,
            ))
    else:
        for i, (u, c) in enumerate(_V1.iter_unpack(data)):
            usize = ((u >> 44) | ((u & 0xF00) << 12)) + 1
            csize = ((c >> 44) | ((c & 0xF00_0000_0000) >> 20)) + 1
            uoff = u & 0xFFF_FFFF_F000
            out.append(BlobChunkMeta(i, c & 0xFF_FFFF_FFFF, csize, uoff, usize, csize != usize))
    if blob is not None:
        for r in out:
            _check_record(r, blob, where)
    return out, table


def _check_record(r: BlobChunkMeta, blob: BlobInfo, where: str) -> None:
    if not 0 < r.compressed_size <= MAX_CHUNK_SIZE or not 0 < r.uncompressed_size <= blob.chunk_size:
        raise FormatError(f"{where}: chunk {r.index} has sizes {r.compressed_size}/{r.uncompressed_size}")
    if blob.compressed_size and r.compressed_offset + r.compressed_size > blob.compressed_size:
        raise FormatError(f"{where}: chunk {r.index} lies outside the blob ({blob.compressed_size} bytes)")
    if blob.uncompressed_size and r.uncompressed_offset + r.uncompressed_size > blob.uncompressed_size:
        raise FormatError(
            f"{where}: chunk {r.index} lies outside the uncompressed blob ({blob.uncompressed_size} bytes)"
        )


def read_blob_meta(
    read: Callable[[int, int], bytes],
    blob: BlobInfo,
    *,
    compressor_for: Callable[[int], Compressor],
    where: str | None = None,
) -> tuple[BlobMetaHeader, list[BlobChunkMeta]]:
    """Fetch ``[ci_offset, ci_offset + ci_compressed_size + 4096)`` of ``blob`` and decode it.

    ``read(offset, length)`` reads the blob (for a ``*-ref`` blob: its RAFS meta blob);
    ``compressor_for(algorithm_id)`` returns a compressor (callers pass
    ``nydus_core.plugins.compressor_by_id``). The header is checked against the blob entry.
    """
    header, records, _table = read_blob_meta_full(read, blob, compressor_for=compressor_for, where=where)
    return header, records


def read_blob_meta_full(
    read: Callable[[int, int], bytes],
    blob: BlobInfo,
    *,
    compressor_for: Callable[[int], Compressor],
    where: str | None = None,
) -> tuple[BlobMetaHeader, list[BlobChunkMeta], ZranTable | None]:
    """Like :func:`read_blob_meta`, also returning a ZRAN blob's contexts and dictionaries."""
    where = where or f"blob {blob.blob_id}: blob.meta"
    if not blob.ci_uncompressed_size and not blob.chunk_count:
        raise FormatError(f"{where}: the blob entry records no blob meta")
    total = blob.ci_compressed_size + BLOB_META_HEADER_SIZE
    # a *-ref blob's meta lives in its separate RAFS blob ("meta blob"), of blob_meta_size bytes
    size = blob.blob_meta_size if blob.features & BlobFeatures.SEPARATE else blob.compressed_size
    if size and blob.ci_offset + total > size:
        raise FormatError(f"{where}: blob meta at {blob.ci_offset} lies outside the blob")
    data = read(blob.ci_offset, total)
    if len(data) != total:
        raise FormatError(f"{where}: read {len(data)} bytes, expected {total} (truncated blob?)")
    header = parse_blob_meta_header(data[blob.ci_compressed_size:], where=where)
    header.check_against(blob, where=where)
    compressor = None
    if header.ci_compressor != COMPRESSOR_NONE:
        compressor = compressor_for(header.ci_compressor)
    records, table = decode_blob_meta(
        data[:blob.ci_compressed_size], header, compressor=compressor, blob=blob, where=where
    )
    return header, records, table


def parse_cached_blob_meta(
    data: bytes, *, where: str = "blob.meta"
) -> tuple[BlobMetaHeader, list[BlobChunkMeta], ZranTable | None]:
    """Decode nydusd's cache copy ``<blob id>.blob.meta``: the uncompressed CI data, zero-padded to
    a 4 KiB multiple, then the 4 KiB header."""
    if len(data) < BLOB_META_HEADER_SIZE:
        raise FormatError(f"{where}: {len(data)} bytes, shorter than the blob meta header")
    header = parse_blob_meta_header(data[-BLOB_META_HEADER_SIZE:], where=where)
    usize = header.ci_uncompressed_size
    if usize > len(data) - BLOB_META_HEADER_SIZE:
        raise FormatError(f"{where}: chunk-info data of {usize} bytes does not fit in {len(data)} bytes")
    plain = dataclasses.replace(header, ci_compressor=COMPRESSOR_NONE, ci_compressed_size=usize)
    records, table = decode_blob_meta(data[:usize], plain, where=where)
    return header, records, table
