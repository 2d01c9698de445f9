"""blob.meta and ToC decoding of the upstream v6 blob, checked against its bootstrap (§6.2-6.5)."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import tarfile

import pytest
import zstandard
from nydus_testsupport.fixtures import require_upstream

from nydus_core.errors import FormatError, IntegrityError
from nydus_core.plugins import compressor_by_id
from nydus_core.rafs.blobmeta import (
    decode_chunk_info_array,
    parse_blob_meta_header,
    read_blob_meta,
)
from nydus_core.rafs.constants import BLOB_ID_INLINE_PLACEHOLDER, BlobFeatures, ChunkFlags
from nydus_core.rafs.image import open_image
from nydus_core.rafs.model import BlobInfo
from nydus_core.rafs.reader import open_bootstrap_bytes
from nydus_core.rafs.toc import (
    extract_bootstrap,
    extract_bootstrap_file,
    is_placeholder_blob_id,
    read_section,
    read_toc,
    substitute_placeholder_blob_ids,
    walk_tar_trailers,
)


@pytest.fixture
def v6():
    d = require_upstream() / "rafs-v6"
    boot = (d / "rafs-v6-2.2.boot").read_bytes()
    with open_image(d / "rafs-v6-2.2.boot") as image:
        [blob] = image.blobs
        data = (d / "blobs" / blob.blob_id).read_bytes()
        yield image, blob, data, boot


def _reader(data: bytes):
    return lambda off, length: data[off:off + length]


def test_blob_meta_agrees_with_chunk_table(v6):
    image, blob, data, _ = v6
    header, records = read_blob_meta(_reader(data), blob, compressor_for=compressor_by_id)
    assert header.features == blob.features and header.ci_entries == blob.chunk_count == len(records)
    table = {c.index: c for c in image.chunk_table()}
    assert set(table) == {r.index for r in records}
    for r in records:
        c = table[r.index]
        assert (r.compressed_offset, r.compressed_size) == (c.compressed_offset, c.compressed_size)
        assert (r.uncompressed_offset, r.uncompressed_size) == (c.uncompressed_offset, c.uncompressed_size)
        assert r.is_compressed == bool(c.flags & ChunkFlags.COMPRESSED)


def test_compressed_and_v2_chunk_info_arrays(v6):
    image, blob, data, _ = v6
    raw_header = data[blob.ci_offset + blob.ci_compressed_size:][:4096]
    header = parse_blob_meta_header(raw_header)
    ci = data[blob.ci_offset:blob.ci_offset + blob.ci_compressed_size]
    expected = decode_chunk_info_array(ci, header, blob=blob)
    # The same array zstd-compressed, as the builder writes it when that is smaller.
    packed = zstandard.ZstdCompressor(level=3).compress(ci)
    zheader = dataclasses.replace(header, ci_compressor=3, ci_compressed_size=len(packed))

    assert decode_chunk_info_array(packed, zheader, compressor=compressor_by_id(3), blob=blob) == expected
    with pytest.raises(FormatError):
        decode_chunk_info_array(packed, zheader, blob=blob)  # no compressor given
    # The v2 form built from the chunk table per §6.2.
    v2 = b""
    for c in sorted(image.chunk_table(), key=lambda c: c.index):
        flags = 0x01 if c.flags & ChunkFlags.COMPRESSED else 0
        u = (c.uncompressed_offset >> 12) | ((c.uncompressed_size - 1) << 32) | (flags << 56)
        v2 += struct.pack("<QQQ", u, c.compressed_offset | (c.compressed_size << 40), 0)
    v2header = dataclasses.replace(header, features=header.features | BlobFeatures.CHUNK_INFO_V2,
                                   ci_compressed_size=len(v2), ci_uncompressed_size=len(v2))
    assert decode_chunk_info_array(v2, v2header, blob=blob) == expected


def test_blob_meta_rejects_bad_input(v6):
    _, blob, data, _ = v6
    raw_header = bytearray(data[blob.ci_offset + blob.ci_compressed_size:][:4096])
    header = parse_blob_meta_header(bytes(raw_header))
    with pytest.raises(FormatError, match="magic"):
        parse_blob_meta_header(b"\0" * 4096)
    with pytest.raises(FormatError):
        parse_blob_meta_header(bytes(raw_header[:100]))
    with pytest.raises(FormatError, match="ci_offset"):
        header.check_against(dataclasses.replace(blob, ci_offset=blob.ci_offset + 8))
    with pytest.raises(FormatError):
        read_blob_meta(_reader(data[:-5000]), blob, compressor_for=compressor_by_id)  # truncated blob
    small = dataclasses.replace(blob, compressed_size=0, uncompressed_size=8192)
    ci = data[blob.ci_offset:blob.ci_offset + blob.ci_compressed_size]
    with pytest.raises(FormatError, match="outside the uncompressed blob"):
        decode_chunk_info_array(ci, header, blob=small)


def test_toc_and_tar_trailers_agree_with_blob_entry(v6):
    image, blob, data, _ = v6
    read = _reader(data)
    toc = read_toc(read, len(data))
    assert toc is not None
    toc.check_against(blob)  # size and SHA-256 recorded in the bootstrap
    assert [e.name for e in toc.entries] == ["image.blob", "blob.meta", "blob.meta.header", "blob.digest"]
    meta = toc.get("blob.meta")
    assert (meta.compressed_offset, meta.compressed_size) == (blob.ci_offset, blob.ci_compressed_size)
    hdr = toc.get("blob.meta.header")
    assert (hdr.compressed_offset, hdr.compressed_size) == (blob.ci_offset + blob.ci_compressed_size, 4096)
    for name in ("blob.meta", "blob.meta.header"):
        read_section(read, len(data), toc.get(name), compressor_for=compressor_by_id)  # SHA-256 checked
    digests = read_section(read, len(data), toc.get("blob.digest"), compressor_for=compressor_by_id)
    by_index = sorted(image.chunk_table(), key=lambda c: c.index)
    assert digests == b"".join(c.block_id for c in by_index)

    sections = walk_tar_trailers(read, len(data))
    assert [s.name for s in sections] == ["rafs.blob.toc", "blob.digest", "blob.meta", "image.blob"]
    toc_s, digest_s, meta_s, blob_s = sections
    assert toc_s.size + 512 == blob.blob_toc_size and toc_s.header_offset + 512 == len(data)
    assert (meta_s.offset, meta_s.size) == (blob.ci_offset, blob.ci_compressed_size + 4096)
    data_end = max(c.compressed_offset + c.compressed_size for c in by_index)
    assert (blob_s.offset, blob_s.size) == (0, data_end)
    # Upstream's blob id skips the blob.digest payload (§6.4).
    without_digests = data[:digest_s.offset] + data[digest_s.offset + digest_s.size:]
    assert hashlib.sha256(without_digests).hexdigest() == blob.blob_id


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def test_extract_inlined_bootstrap(v6, tmp_path):
    _, _, data, boot = v6
    with pytest.raises(FormatError, match="no inlined bootstrap"):
        extract_bootstrap(_reader(data), len(data), compressor_for=compressor_by_id)
    # Legacy layout: ... bootstrap || tar(image.boot), no ToC.
    legacy = data + boot + _tar_header("image.boot", len(boot))
    assert extract_bootstrap(_reader(legacy), len(legacy), compressor_for=compressor_by_id) == boot
    # ToC layout: ... zstd(bootstrap) || tar(image.boot) || ToC || tar(rafs.blob.toc).
    packed = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(boot)
    start = len(data)
    entry = struct.pack("<II16s32sQQQ48x", 0x2, 0, b"image.boot", hashlib.sha256(boot).digest(), start,
                        len(packed), len(boot))
    blob = data + packed + _tar_header("image.boot", len(packed)) + entry + _tar_header("rafs.blob.toc", 128)
    path = tmp_path / "blob"
    path.write_bytes(blob)
    extracted = extract_bootstrap_file(path, compressor_for=compressor_by_id)
    assert extracted == boot
    image = open_bootstrap_bytes(extracted, "inlined")
    assert image.version == 6 and image.lookup(image.root_ino, b"lib.rs") is not None
    # A wrong digest in the ToC is an integrity error.
    bad = blob.replace(hashlib.sha256(boot).digest(), bytes(32))
    with pytest.raises(IntegrityError, match=r"image\.boot"):
        extract_bootstrap(_reader(bad), len(bad), compressor_for=compressor_by_id)


def test_placeholder_blob_ids():
    blobs = [BlobInfo(BLOB_ID_INLINE_PLACEHOLDER, 0, 0x100000), BlobInfo("a" * 64, 1, 0x100000)]
    assert is_placeholder_blob_id(blobs[0].blob_id) and not is_placeholder_blob_id(blobs[1].blob_id)
    assert substitute_placeholder_blob_ids(blobs, "b" * 64) == 1
    assert [b.blob_id for b in blobs] == ["b" * 64, "a" * 64]
