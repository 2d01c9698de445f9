"""decode_chunk (decompress, length, digest / CRC32C checks) and the CRC32C implementation."""

from __future__ import annotations

import hashlib
import os

import pytest

from nydus_core.errors import BlobNotFoundError, IntegrityError, UnsupportedFeatureError
from nydus_core.plugins import compressor_by_id, digester_by_id
from nydus_core.rafs.chunkdata import decode_chunk
from nydus_core.rafs.constants import ChunkFlags
from nydus_core.rafs.crc32c import crc32c, crc32c_pure
from nydus_core.rafs.model import BlobInfo, ChunkInfo
from nydus_core.tools.chunkreader import BlobDirReader

BLOB = "ab" * 32


def chunk(data: bytes, stored: bytes, flags: int, crc: int = 0) -> ChunkInfo:
    return ChunkInfo(hashlib.sha256(data).digest(), 0, flags, len(stored), len(data), 0, 0, 0, 7, crc)


def test_crc32c_check_values():
    # The CRC-32C check value (RFC 3720 / the Castagnoli catalogue) and the iSCSI test vectors.
    assert crc32c_pure(b"123456789") == 0xE3069283
    assert crc32c_pure(bytes(32)) == 0x8A9136AA
    assert crc32c_pure(b"\xff" * 32) == 0x62A8AB43
    assert crc32c_pure(bytes(range(32))) == 0x46DD794E
    assert crc32c_pure(b"6789", crc32c_pure(b"12345")) == 0xE3069283
    data = os.urandom(5000)
    assert crc32c(data) == crc32c_pure(data)


@pytest.mark.parametrize("algo", [0, 1, 3])  # none, lz4_block, zstd
def test_decode_chunk_roundtrip_and_corruption(algo):
    comp, sha = compressor_by_id(algo), digester_by_id(1)
    data = b"nydus " * 5000
    stored = comp.compress(data) if algo else data
    c = chunk(data, stored, ChunkFlags.COMPRESSED if algo else 0)
    assert decode_chunk(stored, c, comp, sha, validate=True, blob_id=BLOB) == data
    with pytest.raises(IntegrityError, match=f"blob {BLOB}: chunk 7 at offset 0"):
        decode_chunk(stored[:-1], c, comp, sha, validate=True, blob_id=BLOB)
    wrong = ChunkInfo(bytes(32), 0, c.flags, c.compressed_size, c.uncompressed_size, 0, 0, 0, 7)
    with pytest.raises(IntegrityError, match="digest mismatch"):
        decode_chunk(stored, wrong, comp, sha, validate=True, blob_id=BLOB)
    assert decode_chunk(stored, wrong, comp, sha, validate=False, blob_id=BLOB) == data
    if algo:
        garbage = bytes(len(stored))
        with pytest.raises(IntegrityError, match=BLOB):
            decode_chunk(garbage, c, comp, sha, validate=True, blob_id=BLOB)
        longer = ChunkInfo(c.block_id, 0, c.flags, c.compressed_size, len(data) + 1, 0, 0, 0, 7)
        with pytest.raises(IntegrityError):
            decode_chunk(stored, longer, comp, sha, validate=False, blob_id=BLOB)


def test_decode_chunk_crc32_and_unsupported_flags():
    none, sha = compressor_by_id(0), digester_by_id(1)
    data = b"123456789"
    c = chunk(data, data, ChunkFlags.HAS_CRC32, crc=0xE3069283)
    c.block_id = bytes(32)  # with HAS_CRC32 the CRC is checked, not the digest
    assert decode_chunk(data, c, none, sha, validate=True, blob_id=BLOB) == data
    c.crc32 ^= 1
    with pytest.raises(IntegrityError, match="CRC32C mismatch"):
        decode_chunk(data, c, none, sha, validate=True, blob_id=BLOB)
    for flag in (ChunkFlags.ENCRYPTED, ChunkFlags.BATCH):
        with pytest.raises(UnsupportedFeatureError):
            decode_chunk(data, chunk(data, data, flag), none, sha, validate=True, blob_id=BLOB)


def test_blob_dir_reader_errors(tmp_path):
    blob = BlobInfo(BLOB, 0, 0x100000, compressor=0, digester=1)
    data = b"x" * 100
    c = chunk(data, data, 0)
    with BlobDirReader(tmp_path) as reader:
        with pytest.raises(BlobNotFoundError, match=BLOB):
            reader.read_chunk(blob, c)
        with pytest.raises(BlobNotFoundError, match="invalid blob id"):
            reader.read_chunk(BlobInfo("../etc", 0, 0x100000), c)
        (tmp_path / BLOB).write_bytes(data[:50])
        with pytest.raises(IntegrityError, match="truncated"):
            reader.read_chunk(blob, c)
    (tmp_path / BLOB).write_bytes(data)
    with BlobDirReader(tmp_path) as reader:
        assert reader.read_chunk(blob, c) == data
