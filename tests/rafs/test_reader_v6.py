"""RAFS v6 reader against the upstream fixture ``rafs-v6-2.2.boot`` and its data blob."""

from __future__ import annotations

import hashlib
import shutil
import stat
import struct

import pytest
from nydus_testsupport.fixtures import require_upstream

from nydus_core.errors import IntegrityError
from nydus_core.plugins import digester_by_id
from nydus_core.rafs.constants import BlobFeatures, SuperFlags
from nydus_core.rafs.image import open_image
from nydus_core.tools.chunkreader import BlobDirReader

BLOB_ID = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"
# From the fixture README (upstream's expected results).
EXPECTED_MD5 = {
    b"/lib.rs": "4709cf8873e419ecedc7d43fdee4a75f",
    b"/sync_io.rs": "5442bc7dc9dc5f985c7594e23866ae6f",
}


@pytest.fixture
def v6():
    d = require_upstream() / "rafs-v6"
    with open_image(d / "rafs-v6-2.2.boot") as image:
        yield image, d / "blobs"


def test_superblock_and_blob_table(v6):
    image, blobs = v6
    assert image.version == 6
    assert image.chunk_size == 0x100000
    assert image.flags == (SuperFlags.HASH_BLAKE3 | SuperFlags.EXPLICIT_UID_GID | SuperFlags.COMPRESSION_ZSTD
                           | SuperFlags.INLINED_CHUNK_DIGEST)
    assert (image.compressor, image.digester) == (3, 0)  # zstd, blake3
    assert image.explicit_uid_gid
    assert image.inode_count() == 3
    assert image.root_ino == 128
    [blob] = image.blobs
    assert blob.blob_id == BLOB_ID
    assert blob.compressed_size == (blobs / BLOB_ID).stat().st_size
    assert blob.chunk_count == 2 and blob.uncompressed_size % 4096 == 0
    assert blob.features & BlobFeatures.ALIGNED and blob.has_toc and not blob.has_inlined_meta
    assert image.prefetch_inodes() == []


def test_tree_attributes_and_contents(v6):
    image, blobs = v6
    paths = dict(image.walk())
    assert set(paths) == {b"/", *EXPECTED_MD5}
    root = image.getattr(image.root_ino)
    assert root.is_dir and root.nlink == 2
    with BlobDirReader(blobs) as reader:
        for path, md5 in EXPECTED_MD5.items():
            ino = paths[path]
            attrs = image.getattr(ino)
            assert attrs.is_reg and attrs.nlink == 1 and stat.S_IMODE(attrs.mode) == 0o644
            assert attrs.mtime > 0  # extended inodes carry mtimes
            data = reader.read_file(image, ino)
            assert len(data) == attrs.size
            assert hashlib.md5(data).hexdigest() == md5
            # Ranged reads agree with the whole file.
            assert reader.read(image, ino, 1000, 777) == data[1000:1777]
            assert reader.read(image, ino, attrs.size - 5, 100) == data[-5:]
            # Chunk ids are the blake3 digests of the uncompressed chunk bytes.
            blake3 = digester_by_id(image.digester)
            for c in image.chunks(ino):
                chunk = data[c.file_offset:c.file_offset + c.uncompressed_size]
                assert blake3.digest(chunk) == c.block_id
                assert c.uncompressed_offset % 4096 == 0


def test_lookup_readdir_parent(v6):
    image, _ = v6
    root = image.root_ino
    names = [n for n, _ in image.readdir(root)]
    assert names == [b"lib.rs", b"sync_io.rs"]
    assert list(image.readdir(root, 1)) == [(b"sync_io.rs", image.lookup(root, b"sync_io.rs"))]
    assert list(image.readdir(root, 2)) == []
    assert image.lookup(root, b"lib.rs") == image.resolve("/lib.rs")
    for missing in (b"a", b"lib.r", b"lib.rs0", b"zzz", b".", b".."):
        assert image.lookup(root, missing) is None
    assert image.parent(root) == root
    assert image.parent(image.resolve("/lib.rs")) is None
    with pytest.raises(NotADirectoryError):
        list(image.readdir(image.resolve("/lib.rs")))


def test_chunk_table_matches_chunk_indexes(v6):
    image, _ = v6
    table = image.chunk_table()
    assert [c.block_id for c in table] == sorted(c.block_id for c in table)
    used = {(c.blob_index, c.index, c.block_id) for p in EXPECTED_MD5 for c in image.chunks(image.resolve(p))}
    assert used == {(c.blob_index, c.index, c.block_id) for c in table}


def test_corrupt_chunk_is_an_integrity_error(v6, tmp_path):
    image, blobs = v6
    shutil.copy(blobs / BLOB_ID, tmp_path / BLOB_ID)
    ino = image.resolve("/sync_io.rs")
    [c] = image.chunks(ino)
    with open(tmp_path / BLOB_ID, "r+b") as f:
        f.seek(c.compressed_offset + c.compressed_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with BlobDirReader(tmp_path) as reader:
        with pytest.raises(IntegrityError, match=BLOB_ID):
            reader.read_file(image, ino)
        # The other file's chunk is intact.
        intact = reader.read_file(image, image.resolve("/lib.rs"))
        assert hashlib.md5(intact).hexdigest() == EXPECTED_MD5[b"/lib.rs"]


def test_compact_inode_and_prefetch_table(v6, tmp_path):
    """A compact (32-byte) chunk-based inode and a prefetch table of nids, made by rewriting the fixture."""
    image, blobs = v6
    lib, sync = image.resolve("/lib.rs"), image.resolve("/sync_io.rs")
    data = bytearray((blobs.parent / "rafs-v6-2.2.boot").read_bytes())
    meta = struct.unpack_from("<I", data, 1024 + 40)[0] * 4096
    off = meta + lib * 32
    fmt, _icount, mode, _r, size, i_u, ino, _uid, _gid, _mtime, _nsec, nlink = struct.unpack_from(
        "<HHHHQIIIIQII", data, off)
    assert fmt == 0x9  # extended, chunk-based
    index = data[off + 64:off + 72]
    compact = struct.pack("<HHHHIIIIHHI", 0x8, 0, mode, nlink, size, 0, i_u, ino, 1000, 1001, 0)
    data[off:off + 72] = compact + index + bytes(32)
    blob_table_end = 4096 + 256
    struct.pack_into("<QI", data, 1152 + 40, blob_table_end, 8)
    struct.pack_into("<II", data, blob_table_end, lib, sync)
    path = tmp_path / "compact.boot"
    path.write_bytes(bytes(data))
    with open_image(path) as compacted, BlobDirReader(blobs) as reader:
        attrs = compacted.getattr(lib)
        assert (attrs.size, attrs.nlink, attrs.uid, attrs.gid) == (size, nlink, 1000, 1001)
        assert attrs.mtime == 0 and attrs.mtime_nsec == 0  # compact inodes carry no mtime
        assert hashlib.md5(reader.read_file(compacted, lib)).hexdigest() == EXPECTED_MD5[b"/lib.rs"]
        assert compacted.prefetch_inodes() == [lib, sync]
