"""Write the RAFS blob ("meta blob") of a ``*-ref`` image: blob.meta, chunk digests and a ToC, no
chunk data (rafs-format.md §6.8).

The data blob of a ``targz-ref``/``tar-ref`` image is the original layer, untouched. This blob holds
its chunk-info v2 array (ZRAN records for a gzip layer, plain byte ranges for a tar), the zran
contexts and their dictionaries, the 4 KiB header, the ``blob.digest`` array and a ToC::

    CI data | header | tar(blob.meta) | digests | tar(blob.digest) | ToC | tar(rafs.blob.toc)
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import BuildError
from ..interfaces import Compressor
from .blob_writer import pack_toc_entry, tar_header
from .checks import recorded_id
from .constants import (
    BLOB_META_HEADER_SIZE,
    BLOB_META_MAGIC,
    COMPRESSOR_NONE,
    TOC_FLAG_NONE,
    TOC_NAME_BLOB_DIGEST,
    TOC_NAME_BLOB_META,
    TOC_NAME_BLOB_META_HEADER,
    TOC_NAME_TOC,
    BlobFeatures,
)
from .model import ChunkInfo
from .zran import ZranContext, pack_zran_area

__all__ = ["RefBlobMeta", "pack_chunk_info_v2", "ref_blob_features", "write_ref_blob"]

_META_HEADER = struct.Struct("<IIIIQQQQQI")
_CI_V2_COMPRESSED = 0x01
_CI_V2_ZRAN = 0x02


def ref_blob_features(zran: bool) -> int:
    """``BlobFeatures`` of a ``*-ref`` blob as nydusify builds it (blob-toc, no inlined bootstrap)."""
    f = (BlobFeatures.ALIGNED | BlobFeatures.CHUNK_INFO_V2 | BlobFeatures.SEPARATE
         | BlobFeatures.INLINED_CHUNK_DIGEST | BlobFeatures.HAS_TAR_HEADER | BlobFeatures.HAS_TOC
         | BlobFeatures.CAP_TAR_TOC)
    if zran:
        f |= BlobFeatures.ZRAN
    return int(f)


def pack_chunk_info_v2(chunk: ChunkInfo, zran: tuple[int, int] | None) -> bytes:
    """Return the 24-byte chunk-info v2 record; ``zran`` = (context index, offset in its output)."""
    usize = chunk.uncompressed_size - 1
    if not 0 <= usize < 1 << 24 or not 0 < chunk.compressed_size < 1 << 24:
        raise BuildError(f"chunk {chunk.index} is too big for a chunk-info v2 record")
    if chunk.uncompressed_offset % 4096 or chunk.compressed_offset >= 1 << 40:
        raise BuildError(f"chunk {chunk.index} offsets do not fit a chunk-info v2 record")
    flags = _CI_V2_COMPRESSED if chunk.is_compressed else 0
    data = 0
    if zran is not None:
        flags |= _CI_V2_ZRAN
        data = (zran[0] << 32) | zran[1]
    uncomp = (chunk.uncompressed_offset >> 12) | (usize << 32) | (flags << 56)
    comp = chunk.compressed_offset | (chunk.compressed_size << 40)
    return struct.pack("<QQQ", uncomp, comp, data)


@dataclass
class RefBlobMeta:
    """Where the sections of a written ``*-ref`` blob are (the fields of its blob table entry)."""

    blob_id: str  # sha256 of the whole file
    size: int
    features: int
    ci_compressor: int
    ci_offset: int
    ci_compressed_size: int
    ci_uncompressed_size: int
    blob_toc_digest: bytes
    blob_toc_size: int


def write_ref_blob(
    out: BinaryIO,
    chunks: Sequence[ChunkInfo],
    zran_refs: Sequence[tuple[int, int]] | None,
    contexts: Sequence[ZranContext] = (),
    dictionaries: Sequence[bytes] = (),
    *,
    ci_compressor: Compressor | None = None,
) -> RefBlobMeta:
    """Write the RAFS blob of a ``*-ref`` image to ``out``; ``zran_refs`` (one per chunk) for a
    gzip layer, None for a tar. The CI data is compressed with ``ci_compressor`` when smaller."""
    zran = zran_refs is not None
    features = ref_blob_features(zran)
    array = b"".join(pack_chunk_info_v2(c, zran_refs[i] if zran_refs is not None else None)
                     for i, c in enumerate(chunks))
    area = pack_zran_area(contexts, dictionaries) if zran else b""
    ci_raw = array + area
    stored, ci_algo, ci_flag = ci_raw, COMPRESSOR_NONE, TOC_FLAG_NONE
    if ci_compressor is not None and ci_raw:
        packed = ci_compressor.compress(ci_raw)
        if len(packed) < len(ci_raw):
            stored, ci_algo = packed, recorded_id(ci_compressor, "compressor")
            ci_flag = ci_compressor.toc_flag or TOC_FLAG_NONE
    header = bytearray(BLOB_META_HEADER_SIZE)
    _META_HEADER.pack_into(header, 0, BLOB_META_MAGIC, features, ci_algo, len(chunks), 0, len(stored),
                           len(ci_raw), len(array) if zran else 0, len(area), len(contexts))
    struct.pack_into("<I", header, BLOB_META_HEADER_SIZE - 4, BLOB_META_MAGIC)
    digests = b"".join(c.block_id for c in chunks)

    h = hashlib.sha256()
    pos = 0

    def write(data: bytes) -> None:
        nonlocal pos
        out.write(data)
        h.update(data)
        pos += len(data)

    write(stored)
    write(bytes(header))
    write(tar_header(TOC_NAME_BLOB_META, len(stored) + len(header)))
    digest_offset = pos
    write(digests)
    write(tar_header(TOC_NAME_BLOB_DIGEST, len(digests)))
    toc = b"".join((
        pack_toc_entry(TOC_NAME_BLOB_META, ci_flag, hashlib.sha256(ci_raw).digest(), 0, len(stored),
                       len(ci_raw)),
        pack_toc_entry(TOC_NAME_BLOB_META_HEADER, TOC_FLAG_NONE, hashlib.sha256(header).digest(),
                       len(stored), len(header), len(header)),
        pack_toc_entry(TOC_NAME_BLOB_DIGEST, TOC_FLAG_NONE, hashlib.sha256(digests).digest(), digest_offset,
                       len(digests), len(digests)),
    ))
    trailer = tar_header(TOC_NAME_TOC, len(toc))
    write(toc)
    write(trailer)
    return RefBlobMeta(h.hexdigest(), pos, features, ci_algo, 0, len(stored), len(ci_raw),
                       hashlib.sha256(toc + trailer).digest(), len(toc) + len(trailer))
