"""RAFS v5 reader against the upstream fixture ``sha256-nocompress-repeatable`` and its blob."""

from __future__ import annotations

import hashlib
import os
import stat
import struct

import pytest
from nydus_testsupport.fixtures import parse_tree_result, require_upstream

from nydus_core.errors import FormatError
from nydus_core.plugins import digester_by_id
from nydus_core.rafs.constants import SuperFlags, V5InodeFlags
from nydus_core.rafs.image import open_image
from nydus_core.rafs.reader import open_bootstrap_bytes
from nydus_core.tools.chunkreader import BlobDirReader

HARD_LINKS = (b"/hardlink-test/foo", b"/hardlink-test/test.sh", b"/normal-file-test/test.sh")


@pytest.fixture
def v5():
    d = require_upstream() / "rafs-v5"
    with open_image(d / "sha256-nocompress-repeatable") as image:
        yield image, d


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "link"
    return "file"


def test_superblock(v5):
    image, d = v5
    assert image.version == 5
    assert image.flags == SuperFlags.COMPRESSION_NONE | SuperFlags.HASH_SHA256
    assert (image.compressor, image.digester) == (0, 1)  # none, sha256
    assert not image.explicit_uid_gid
    assert image.chunk_size == 0x100000
    assert image.root_ino == 1
    assert image.inode_count() == 51  # old builders did not count the root (rafs-format.md §4.2)
    [blob] = image.blobs
    blob_file = d / "blobs" / blob.blob_id
    assert blob.blob_id == hashlib.sha256(blob_file.read_bytes()).hexdigest()
    assert blob.compressed_size == blob_file.stat().st_size
    assert blob.compressor == 0 and blob.digester == 1
    assert image.prefetch_inodes() == []


def test_tree_and_every_md5(v5):
    image, d = v5
    entries, md5s = parse_tree_result(d / "sha256-nocompress-repeatable.result")
    expected = {(e.path, e.kind, e.target) for e in entries}
    seen = set()
    files = {}
    for path, ino in image.walk():
        if path == b"/":
            continue
        attrs = image.getattr(ino)
        target = os.fsdecode(image.readlink(ino)) if attrs.is_symlink else None
        seen.add((os.fsdecode(path), _kind(attrs.mode), target))
        if attrs.is_reg:
            files[os.fsdecode(path)] = ino
        assert attrs.uid == 0 and attrs.gid == 0  # EXPLICIT_UID_GID is clear
        assert image.xattrs(ino) == {}
    assert seen == expected
    assert set(md5s) == set(files)
    sha256 = digester_by_id(image.digester)
    with BlobDirReader(d / "blobs") as reader:
        for path, ino in files.items():
            data = reader.read_file(image, ino)
            assert len(data) == image.getattr(ino).size
            assert hashlib.md5(data).hexdigest() == md5s[path], path
            for c in image.chunks(ino):
                assert sha256.digest(data[c.file_offset:c.file_offset + c.uncompressed_size]) == c.block_id
        # A multi-chunk file read across the chunk boundary.
        ino = files["/normal-file-test/holefiles/head-hole-2"]
        whole = reader.read_file(image, ino)
        cs = image.chunk_size
        assert reader.read(image, ino, cs - 10, 20) == whole[cs - 10:cs + 10]
        assert [c.file_offset for c in image.chunks_for_range(ino, cs - 10, 20)] == [0, cs]


def test_hard_links_share_an_inode(v5):
    image, _ = v5
    inos = {image.resolve(p) for p in HARD_LINKS}
    assert len(inos) == 1
    [ino] = inos
    attrs = image.getattr(ino)
    assert attrs.is_reg and attrs.nlink == 3
    assert image.parent(ino) == image.resolve("/hardlink-test")


def test_symlinks_and_lookup(v5):
    image, _ = v5
    d = image.resolve("/symlink-test")
    names = [n for n, _ in image.readdir(d)]
    assert names == sorted(names) and len(names) == 7
    for i, name in enumerate(names):
        assert image.lookup(d, name) == image.resolve(b"/symlink-test/" + name)
        assert [n for n, _ in image.readdir(d, i)] == names[i:]
        assert image.getattr(image.lookup(d, name)).is_symlink
    assert image.readlink(image.resolve("/symlink-test/root-2")) == b"/foobar"
    for missing in (b"", b"a", b"foo0", b"zz", b"."):
        assert image.lookup(d, missing) is None
    assert image.parent(image.root_ino) == image.root_ino
    with pytest.raises(OSError):
        image.readlink(d)
    with pytest.raises(NotADirectoryError):
        image.lookup(image.resolve("/symlink-test/root-2"), b"x")
    assert image.chunks(d) == []


def test_directory_link_counts(v5):
    image, _ = v5
    for _path, ino in image.walk():
        attrs = image.getattr(ino)
        if attrs.is_dir:
            subdirs = sum(1 for _n, child in image.readdir(ino) if image.getattr(child).is_dir)
            assert attrs.nlink == 2 + subdirs


def test_to_tree_keeps_hard_links(v5):
    image, _ = v5
    tree = image.to_tree()
    a = tree.children[b"hardlink-test"].children[b"foo"]
    b = tree.children[b"normal-file-test"].children[b"test.sh"]
    assert a is b and a.chunks and a.chunks[0].uncompressed_size == a.size


def test_sparse_chunk_records_with_has_hole(v5, tmp_path):
    """HAS_HOLE: a file may list fewer chunk records than its size needs; gaps read as zeros.

    ``head-hole-1`` starts with two identical all-zero chunks; dropping the second record and setting
    HAS_HOLE must read back the same bytes (its md5 is in the upstream .result file).
    """
    image, d = v5
    _, md5s = parse_tree_result(d / "sha256-nocompress-repeatable.result")
    path = "/normal-file-test/holefiles/head-hole-1"
    ino = image.resolve(path)
    chunks = image.chunks(ino)
    assert len(chunks) == 3 and chunks[0].block_id == chunks[1].block_id
    data = bytearray((d / "sha256-nocompress-repeatable").read_bytes())
    it_off = struct.unpack_from("<Q", data, 32)[0]
    rec = struct.unpack_from("<I", data, it_off + 4 * (ino - 1))[0] << 3
    name_size = struct.unpack_from("<H", data, rec + 100)[0]
    first = rec + 128 + (name_size + 7) // 8 * 8
    struct.pack_into("<Q", data, rec + 80, V5InodeFlags.HAS_HOLE)
    struct.pack_into("<I", data, rec + 96, 2)
    data[first + 80:first + 160] = data[first + 160:first + 240]  # record 1 := record 2
    sparse = tmp_path / "sparse.boot"
    sparse.write_bytes(bytes(data))
    with open_image(sparse) as holey, BlobDirReader(d / "blobs") as reader:
        assert [c.file_offset for c in holey.chunks(ino)] == [0, 2 * holey.chunk_size]
        content = reader.read_file(holey, ino)
        assert hashlib.md5(content).hexdigest() == md5s[path]
        cs = holey.chunk_size
        assert holey.chunks_for_range(ino, cs + 5, 10) == []
        assert [c.file_offset for c in holey.chunks_for_range(ino, cs - 5, cs + 10)] == [0, 2 * cs]
        assert reader.read(holey, ino, cs - 5, cs + 10) == content[cs - 5:2 * cs + 5]
        # Without HAS_HOLE the same records are rejected.
        struct.pack_into("<Q", data, rec + 80, 0)
        with pytest.raises(FormatError, match="2 chunks for a file"):
            open_bootstrap_bytes(bytes(data), "dense").chunks(ino)
