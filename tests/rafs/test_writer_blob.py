"""BlobWriter: section layout, tar trailers, ToC, blob.meta records and blob id (rafs-format.md §6)."""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile

import pytest
from nydus_testkit.samples import payload, random_bytes
from nydus_testsupport.blob_images import decode_chunk_info_v1
from nydus_testsupport.fixtures import require_upstream

from nydus_core.builtins import NoneCompressor, Sha256Digester
from nydus_core.errors import BuildError
from nydus_core.plugins import get_compressor, get_digester
from nydus_core.rafs.blob_writer import (
    BlobWriter,
    pack_blob_meta_header,
    pack_chunk_info_v1,
    tar_header,
)
from nydus_core.rafs.constants import BLOB_ID_INLINE_PLACEHOLDER, BlobFeatures, ChunkFlags
from nydus_core.rafs.image import open_image
from nydus_core.rafs.model import ChunkInfo
from nydus_core.tools.chunkreader import BlobDirReader

CS = 0x1000
FIXTURE_BLOB = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"


def _sections(blob: bytes) -> list[tuple[str, bytes]]:
    """Walk the tar trailers from the end with Python's tarfile header parser (independent reader)."""
    out = []
    end = len(blob)
    while end >= 512:
        info = tarfile.TarInfo.frombuf(blob[end - 512:end], "utf-8", "strict")
        start = end - 512 - info.size
        assert start >= 0
        out.append((info.name, blob[start:end - 512]))
        end = start
    assert end == 0, "sections must cover the whole blob"
    return out[::-1]


def _toc(entries: bytes) -> list[dict]:
    out = []
    for off in range(0, len(entries), 128):
        flags, _r, name, digest, coff, csize, usize = struct.unpack_from("<II16s32sQQQ", entries, off)
        out.append(dict(flags=flags, name=name.rstrip(b"\0").decode(), digest=digest, coff=coff, csize=csize,
                        usize=usize))
    return out


def _write(chunks: list[bytes], **kw) -> tuple[bytes, object, list[ChunkInfo]]:
    buf = io.BytesIO()
    bw = BlobWriter(buf, compressor=kw.pop("compressor", get_compressor("zstd")),
                    digester=kw.pop("digester", get_digester("blake3")), chunk_size=CS, **kw)
    infos = [bw.add_chunk(c) for c in chunks]
    boot = kw.get("inline_meta") and (lambda prov: b"BOOTSTRAP:" + prov.blob_id.encode() + bytes(5000))
    info = bw.finish(bootstrap=boot or None)
    return buf.getvalue(), info, infos


def _fixture_chunks(image) -> list[ChunkInfo]:
    regular = (ino for _p, ino in image.walk() if image.getattr(ino).is_reg)
    return sorted((c for ino in regular for c in image.chunks(ino)), key=lambda c: c.index)


def test_tar_header_is_a_valid_gnu_header():
    hdr = tar_header("image.blob", 7802)
    info = tarfile.TarInfo.frombuf(hdr, "utf-8", "strict")  # checks the checksum too
    assert (info.name, info.size, info.type, info.mtime) == ("image.blob", 7802, tarfile.REGTYPE, 0)
    assert hdr[257:265] == b"ustar  \0"
    huge = tar_header("image.blob", 9 * 1024**3)  # beyond 11 octal digits: GNU base-256
    assert huge[124] & 0x80
    assert tarfile.TarInfo.frombuf(huge, "utf-8", "strict").size == 9 * 1024**3


def test_tar_headers_match_upstream_fixture_bytes():
    blob = (require_upstream() / "rafs-v6" / "blobs" / FIXTURE_BLOB).read_bytes()
    sections = ((7802, "image.blob", 7802), (12442, "blob.meta", 4128), (13018, "blob.digest", 64),
                (14042, "rafs.blob.toc", 512))
    for off, name, size in sections:
        assert blob[off:off + 512] == tar_header(name, size)


def test_chunk_info_and_meta_header_match_upstream_fixture():
    d = require_upstream() / "rafs-v6"
    blob = (d / "blobs" / FIXTURE_BLOB).read_bytes()
    with open_image(d / "rafs-v6-2.2.boot") as image:
        b = image.blobs[0]
        chunks = _fixture_chunks(image)
    ci = blob[b.ci_offset:b.ci_offset + b.ci_compressed_size]
    assert b.ci_compressor == 0 and ci == b"".join(pack_chunk_info_v1(c) for c in chunks)
    header = blob[b.ci_offset + b.ci_compressed_size:][:4096]
    assert header == pack_blob_meta_header(b.features, b.ci_compressor, len(chunks), b.ci_offset,
                                           b.ci_compressed_size, b.ci_uncompressed_size)


def test_reproduces_upstream_fixture_blob_given_upstream_zstd_frames():
    """Fed upstream's compressed chunk bytes (libzstd builds differ), the writer reproduces the fixture
    blob byte for byte, except the documented nydus-image 2.2 quirks in the ToC (§6.3)."""
    d = require_upstream() / "rafs-v6"
    fixture = (d / "blobs" / FIXTURE_BLOB).read_bytes()
    zstd = get_compressor("zstd")
    with open_image(d / "rafs-v6-2.2.boot") as image, BlobDirReader(d / "blobs") as reader:
        chunks = _fixture_chunks(image)
        frames = {reader.read_chunk(image.blobs[0], c): fixture[c.compressed_offset:][:c.compressed_size]
                  for c in chunks}
        chunk_size = image.chunk_size

    class Replay(type(zstd)):  # a real compressor that answers with upstream's frames for known input
        def compress(self, data: bytes) -> bytes:
            return frames.get(bytes(data)) or super().compress(data)

    buf = io.BytesIO()
    bw = BlobWriter(buf, compressor=Replay(), digester=get_digester("blake3"), chunk_size=chunk_size,
                    blob_toc=True)
    for data in frames:
        bw.add_chunk(data)
    info = bw.finish()
    ours = buf.getvalue()
    assert len(ours) == len(fixture)
    toc = 13530  # ToC entries of the fixture
    quirks = {toc + 56, toc + 57}  # image.blob compressed_offset: 7802 in 2.2, 0 since 2023
    quirks |= {toc + 128 * k + i for k in range(4) for i in range(124, 128)}  # uninitialised reserved bytes
    assert [i for i in range(len(ours)) if ours[i] != fixture[i]] == sorted(
        i for i in quirks if ours[i] != fixture[i])
    assert info.blob_id == hashlib.sha256(ours).hexdigest()
    assert info.features == BlobFeatures.ALIGNED | BlobFeatures.CAP_TAR_TOC | BlobFeatures.HAS_TAR_HEADER | \
        BlobFeatures.HAS_TOC | BlobFeatures.INLINED_CHUNK_DIGEST


def test_plain_blob_layout_and_records():
    chunks = [payload(CS, 1), random_bytes(CS, 2), b"short tail"]
    blob, info, recs = _write(chunks)
    assert info.blob_id == hashlib.sha256(blob).hexdigest()
    assert info.features == BlobFeatures.ALIGNED | BlobFeatures.CAP_TAR_TOC
    assert info.compressed_size == len(blob) == info.ci_offset + info.ci_compressed_size + 4096
    assert info.blob_toc_size == 0 and info.blob_toc_digest == bytes(32)
    assert info.chunk_count == 3 and info.uncompressed_size == 3 * CS
    # compressible data compressed, random data stored raw (never bigger than the input)
    assert recs[0].flags & ChunkFlags.COMPRESSED and recs[0].compressed_size < CS
    assert recs[1].flags == 0 and recs[1].compressed_size == CS
    zstd = get_compressor("zstd")
    pos = 0
    for k, (data, r) in enumerate(zip(chunks, recs)):
        assert (r.index, r.compressed_offset, r.uncompressed_offset) == (k, pos, k * CS)
        stored = blob[r.compressed_offset:r.compressed_offset + r.compressed_size]
        assert (zstd.decompress(stored, len(data)) if r.is_compressed else stored) == data
        assert r.block_id == get_digester("blake3").digest(data)
        pos += r.compressed_size
    # blob.meta header and CI array agree with the records
    hdr = blob[info.ci_offset + info.ci_compressed_size:]
    magic, features, ci_comp, entries, ci_off, ci_c, ci_u = struct.unpack_from("<IIIIQQQ", hdr)
    assert (magic, features, entries, ci_off, ci_c, ci_u) == (0xB10BB10B, info.features, 3, info.ci_offset,
                                                              info.ci_compressed_size, 48)
    assert struct.unpack_from("<I", hdr, 4092)[0] == 0xB10BB10B
    ci = blob[info.ci_offset:info.ci_offset + info.ci_compressed_size]
    if ci_comp:
        assert ci_comp == 3 and len(ci) < 48
        ci = zstd.decompress(ci, 48)
    assert decode_chunk_info_v1(ci) == [
        (r.uncompressed_offset, r.uncompressed_size, r.compressed_offset, r.compressed_size) for r in recs]


def test_blob_toc_layout_digests_and_id():
    chunks = [payload(CS, 3), payload(CS, 4), random_bytes(100, 5)]
    blob, info, recs = _write(chunks, blob_toc=True)
    assert info.blob_id == hashlib.sha256(blob).hexdigest()  # the whole file, blob.digest included
    sections = _sections(blob)
    assert [n for n, _ in sections] == ["image.blob", "blob.meta", "blob.digest", "rafs.blob.toc"]
    data, meta, digests, toc_raw = (s for _, s in sections)
    assert digests == b"".join(r.block_id for r in recs)
    assert info.blob_toc_size == len(toc_raw) + 512
    assert info.blob_toc_digest == hashlib.sha256(blob[-info.blob_toc_size:]).digest()
    toc = {e["name"]: e for e in _toc(toc_raw)}
    assert list(toc) == ["image.blob", "blob.meta", "blob.meta.header", "blob.digest"]
    assert (toc["image.blob"]["coff"], toc["image.blob"]["csize"]) == (0, len(data))
    assert toc["image.blob"]["usize"] == info.uncompressed_size
    assert toc["image.blob"]["digest"] == hashlib.sha256(blob[:len(data) + 512]).digest()
    m = toc["blob.meta"]
    assert (m["coff"], m["csize"], m["usize"]) == (info.ci_offset, info.ci_compressed_size, 48)
    h = toc["blob.meta.header"]
    assert blob[h["coff"]:h["coff"] + 4096] == meta[-4096:]
    assert h["digest"] == hashlib.sha256(meta[-4096:]).digest()
    assert toc["blob.digest"]["digest"] == hashlib.sha256(digests).digest()
    assert blob[toc["blob.digest"]["coff"]:][:len(digests)] == digests


def test_inline_meta_with_toc_embeds_zstd_bootstrap_with_placeholder_id():
    blob, info, _ = _write([payload(CS, 6)], blob_toc=True, inline_meta=True,
                           meta_compressor=get_compressor("zstd"))
    assert info.features & BlobFeatures.INLINED_FS_META and info.features & BlobFeatures.HAS_TOC
    names = [n for n, _ in _sections(blob)]
    assert names == ["image.blob", "blob.meta", "blob.digest", "image.boot", "rafs.blob.toc"]
    boot_stored = dict(_sections(blob))["image.boot"]
    toc = {e["name"]: e for e in _toc(dict(_sections(blob))["rafs.blob.toc"])}
    boot = get_compressor("zstd").decompress(boot_stored, toc["image.boot"]["usize"])
    assert boot.startswith(b"BOOTSTRAP:" + BLOB_ID_INLINE_PLACEHOLDER.encode())
    assert toc["image.boot"]["flags"] == 0x2 and toc["image.boot"]["digest"] == hashlib.sha256(boot).digest()
    assert info.blob_id == hashlib.sha256(blob).hexdigest() and info.compressed_size == len(blob)
    assert info.blob_toc_size == 5 * 128 + 512


def test_inline_meta_without_toc_ends_with_raw_bootstrap():
    blob, info, _ = _write([payload(CS, 7)], inline_meta=True)
    assert info.features & BlobFeatures.HAS_TAR_HEADER and not info.features & BlobFeatures.HAS_TOC
    sections = _sections(blob)
    assert [n for n, _ in sections] == ["image.blob", "blob.meta", "image.boot"]
    assert sections[-1][1].startswith(b"BOOTSTRAP:" + BLOB_ID_INLINE_PLACEHOLDER.encode())


def test_thread_pool_gives_the_same_bytes():
    chunks = [payload(CS, s) for s in range(40)] + [random_bytes(CS, 99)]
    one, info1, _ = _write(chunks, blob_toc=True, workers=1)
    many, info2, recs = _write(chunks, blob_toc=True, workers=3)
    assert one == many and info1 == info2
    assert all(r.compressed_size > 0 for r in recs)


def test_none_compressor_and_sha256():
    data = payload(CS, 8)
    blob, info, recs = _write([data], compressor=NoneCompressor(), digester=Sha256Digester())
    assert (info.compressor, info.digester, info.ci_compressor) == (0, 1, 0)
    assert recs[0].flags == 0 and blob[:CS] == data and recs[0].block_id == hashlib.sha256(data).digest()


def test_rejects_oversized_and_empty_chunks():
    bw = BlobWriter(io.BytesIO(), compressor=NoneCompressor(), digester=Sha256Digester(), chunk_size=CS)
    with pytest.raises(BuildError):
        bw.add_chunk(bytes(CS + 1))
    with pytest.raises(BuildError):
        bw.add_chunk(b"")
