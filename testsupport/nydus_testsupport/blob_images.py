"""Make the *uncompressed blob image* of a data blob: every chunk's bytes at its uncompressed offset
(rafs-format.md §6.6). That file is the EROFS extra device of the blob, so a RAFS v6 bootstrap plus
these images can be checked with ``fsck.erofs --device=...`` or mounted by the kernel.

:func:`blob_image_from_meta` places chunks using the blob's own ``blob.meta`` chunk-info array
(independent of the bootstrap's chunk records); :func:`make_blob_images` does it for every blob of
a bootstrap whose blobs sit in a directory named by blob id.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from nydus_core.plugins import compressor_by_id
from nydus_core.rafs.constants import BLOB_META_HEADER_SIZE, BLOB_META_MAGIC, COMPRESSOR_NONE
from nydus_core.rafs.image import open_image
from nydus_core.rafs.model import BlobInfo

__all__ = ["blob_image_from_meta", "decode_chunk_info_v1", "make_blob_images"]


def decode_chunk_info_v1(raw: bytes) -> list[tuple[int, int, int, int]]:
    """Decode a v1 chunk-info array into ``(uncompressed_offset, uncompressed_size,
    compressed_offset, compressed_size)`` tuples (rafs-format.md §6.2)."""
    out = []
    for off in range(0, len(raw), 16):
        u, c = struct.unpack_from("<QQ", raw, off)
        uoff = u & 0xFFF_FFFF_F000
        usize = ((u >> 44) | ((u & 0xF00) << 12)) + 1
        coff = c & 0xFF_FFFF_FFFF
        csize = ((c >> 44) | ((c & 0xF00_0000_0000) >> 20)) + 1
        out.append((uoff, usize, coff, csize))
    return out


def blob_image_from_meta(
    blob_path: str | os.PathLike[str], info: BlobInfo, out_path: str | os.PathLike[str]
) -> Path:
    """Write the uncompressed image of the blob at ``blob_path`` described by ``info``."""
    data = Path(blob_path).read_bytes()
    hdr_off = info.ci_offset + info.ci_compressed_size
    hdr = data[hdr_off : hdr_off + BLOB_META_HEADER_SIZE]
    magic, _features, ci_comp, entries = struct.unpack_from("<IIII", hdr, 0)
    magic2 = struct.unpack_from("<I", hdr, BLOB_META_HEADER_SIZE - 4)[0]
    if magic != BLOB_META_MAGIC or magic2 != BLOB_META_MAGIC:
        raise ValueError(f"{blob_path}: no blob.meta header at {hdr_off}")
    ci = data[info.ci_offset : info.ci_offset + info.ci_compressed_size]
    if ci_comp != COMPRESSOR_NONE:
        ci = compressor_by_id(ci_comp).decompress(ci, info.ci_uncompressed_size)
    records = decode_chunk_info_v1(ci)
    if len(records) != entries:
        raise ValueError(f"{blob_path}: blob.meta has {len(records)} records, header says {entries}")
    chunk_comp = compressor_by_id(info.compressor)
    image = bytearray(info.uncompressed_size)
    for uoff, usize, coff, csize in records:
        raw = data[coff : coff + csize]
        chunk = chunk_comp.decompress(raw, usize) if csize != usize else raw
        image[uoff : uoff + usize] = chunk
    out = Path(out_path)
    out.write_bytes(image)
    return out


def make_blob_images(
    bootstrap: str | os.PathLike[str], blob_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write the uncompressed image of every blob of ``bootstrap`` (blobs read from
    ``blob_dir/<blob id>``) into ``out_dir``; return their paths in blob-table order (= EROFS
    device order)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open_image(bootstrap) as image:
        blobs = list(image.blobs)
    return [
        blob_image_from_meta(Path(blob_dir) / b.blob_id, b, out / f"{b.blob_id}.blob.data") for b in blobs
    ]
