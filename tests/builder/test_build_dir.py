"""Building from a directory: exact round trip through our reader, fsck.erofs and the kernel;
reproducibility, blob ids, algorithms, options and outputs."""

from __future__ import annotations

import hashlib
import os
import struct
import tarfile
import threading
from pathlib import Path

import pytest
from nydus_testsupport.blob_images import make_blob_images
from nydus_testsupport.erofs import erofs_mount, fsck_extract, fsck_unavailable, kernel_mount_unavailable
from nydus_testsupport.tree_compare import diff_snapshots, snapshot_bootstrap, snapshot_dir
from nydus_testsupport.trees import make_random_tree, make_sample_tree

from nydus_core.builder import BuildOptions, build
from nydus_core.errors import UnknownPluginError, UsageError
from nydus_core.plugins import get_compressor
from nydus_core.rafs.constants import BLOB_ID_INLINE_PLACEHOLDER, BlobFeatures, SuperFlags
from nydus_core.rafs.image import open_image
from nydus_core.rafs.reader import open_bootstrap_bytes

CS = 0x1000


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample tree (every inode kind) plus a 10k-entry directory, built once with blob-toc."""
    tmp = tmp_path_factory.mktemp("sample")
    src = make_sample_tree(tmp / "src", chunk_size=CS, big_dir=10_000).root
    result = build(src, "dir-rafs", bootstrap=tmp / "boot", blob_dir=tmp / "blobs",
                   options=BuildOptions(chunk_size=CS, blob_toc=True))
    return tmp, src, result


def test_reader_sees_the_source_exactly(sample):
    tmp, src, result = sample
    assert diff_snapshots(snapshot_dir(src), snapshot_bootstrap(tmp / "boot", tmp / "blobs")) == []
    assert result.stats.files >= 10_000 and result.stats.hardlinks == 3
    assert result.stats.chunks_dedup >= 5  # dup-of-words.txt reuses words.txt's chunks


def test_blob_id_is_sha256_of_the_blob_file(sample):
    tmp, _src, result = sample
    data = Path(result.blob_path).read_bytes()
    assert result.blob_path == tmp / "blobs" / result.blob_id
    assert result.blob_id == hashlib.sha256(data).hexdigest()
    assert result.blob_info.compressed_size == len(data)
    with open_image(tmp / "boot") as image:
        assert [b.blob_id for b in image.blobs] == [result.blob_id]
        assert image.flags & SuperFlags.INLINED_CHUNK_DIGEST and image.flags & SuperFlags.EXPLICIT_UID_GID


def test_fsck_erofs_extracts_the_source(sample, tmp_path):
    if reason := fsck_unavailable():
        pytest.skip(reason)
    tmp, src, _ = sample
    devices = make_blob_images(tmp / "boot", tmp / "blobs", tmp_path / "images")
    fsck_extract(tmp / "boot", devices, tmp_path / "out")
    # erofs-utils 1.5 restores neither xattrs nor hard links; sockets are not extracted
    diff = diff_snapshots(snapshot_dir(src), snapshot_dir(tmp_path / "out"), ignore=["xattrs", "link_group"],
                          ignore_paths=[b"socket"])
    assert diff == []


def test_kernel_mount_shows_the_source(sample, tmp_path):
    if reason := kernel_mount_unavailable():
        pytest.skip(reason)
    tmp, src, _ = sample
    devices = make_blob_images(tmp / "boot", tmp / "blobs", tmp_path / "images")
    with erofs_mount(tmp / "boot", devices, tmp_path / "mnt") as mnt:
        got = snapshot_dir(mnt)
    expected = snapshot_dir(src)
    assert diff_snapshots(expected, got) == []  # contents, modes, owners, mtimes, links, devices, xattrs


def test_reproducible_bytes(tmp_path):
    src = make_random_tree(tmp_path / "src", seed=3, entries=80, chunk_size=CS)
    outs = []
    for k in (1, 2):
        r = build(src, "directory", bootstrap=tmp_path / f"boot{k}", blob=tmp_path / f"blob{k}",
                  options=BuildOptions(chunk_size=CS, blob_toc=True, workers=k))
        outs.append(((tmp_path / f"boot{k}").read_bytes(), (tmp_path / f"blob{k}").read_bytes(), r.blob_id))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("compressor, digester", [("none", "sha256"), ("lz4_block", "blake3"),
                                                  ("zstd", "sha256")])
def test_algorithms_round_trip(tmp_path, compressor, digester):
    src = make_random_tree(tmp_path / "src", seed=11, entries=40, chunk_size=CS)
    build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs",
          options=BuildOptions(chunk_size=CS, compressor=compressor, digester=digester))
    with open_image(tmp_path / "boot") as image:
        ids = {"none": 0, "lz4_block": 1, "zstd": 3}[compressor], {"blake3": 0, "sha256": 1}[digester]
        assert (image.compressor, image.digester) == ids
        assert (image.blobs[0].compressor, image.blobs[0].digester) == ids
    assert diff_snapshots(snapshot_dir(src), snapshot_bootstrap(tmp_path / "boot", tmp_path / "blobs")) == []


@pytest.mark.parametrize("chunk_size", [0x1000, 0x100000, 0x1000000])
def test_chunk_sizes(tmp_path, chunk_size):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(0x2345) + bytes(0x1000))
    build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs",
          options=BuildOptions(chunk_size=chunk_size))
    with open_image(tmp_path / "boot") as image:
        assert image.chunk_size == chunk_size
        assert len(image.chunks(image.resolve("/f"))) == -(-0x3345 // chunk_size)
    assert diff_snapshots(snapshot_dir(src), snapshot_bootstrap(tmp_path / "boot", tmp_path / "blobs")) == []


@pytest.mark.parametrize("bad", [0, 0x800, 0x1800, 0x2000000])
def test_invalid_chunk_size(tmp_path, bad):
    with pytest.raises(UsageError, match="chunk size"):
        build(tmp_path, "dir-rafs", bootstrap=tmp_path / "b", blob_dir=tmp_path,
              options=BuildOptions(chunk_size=bad))


def test_unknown_algorithms_and_options(tmp_path):
    with pytest.raises(UnknownPluginError, match="Unknown compressor 'brotli'"):
        build(tmp_path, "dir-rafs", bootstrap=tmp_path / "b", blob_dir=tmp_path,
              options=BuildOptions(compressor="brotli"))
    with pytest.raises(UnknownPluginError, match="digester 'md5'"):
        build(tmp_path, "dir-rafs", bootstrap=tmp_path / "b", blob_dir=tmp_path,
              options=BuildOptions(digester="md5"))
    with pytest.raises(UsageError, match="RAFS v6 only"):
        build(tmp_path, "dir-rafs", bootstrap=tmp_path / "b", blob_dir=tmp_path,
              options=BuildOptions(fs_version=5))
    with pytest.raises(UsageError, match="not supported"):
        build(tmp_path, "estargz-ref", bootstrap=tmp_path / "b", blob_dir=tmp_path)
    with pytest.raises(UsageError, match="blob output"):
        build(tmp_path, "dir-rafs", bootstrap=tmp_path / "b")
    with pytest.raises(UsageError, match="bootstrap output"):
        build(tmp_path, "dir-rafs", blob_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == []  # nothing written by failed calls


def test_no_data_means_no_blob(tmp_path):
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "empty").write_bytes(b"")
    os.symlink("empty", src / "link")
    r = build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs")
    assert r.blob_path is None and r.blob_info is None and r.blobs == []
    assert list((tmp_path / "blobs").iterdir()) == []
    with open_image(tmp_path / "boot") as image:
        assert image.blobs == []
    assert diff_snapshots(snapshot_dir(src), snapshot_bootstrap(tmp_path / "boot"), ignore=["sha256"]) == []
    if not fsck_unavailable():
        fsck_extract(tmp_path / "boot", [], tmp_path / "out")
        assert sorted(os.listdir(tmp_path / "out")) == ["dir", "empty", "link"]


def test_progress_and_stats(tmp_path):
    src = make_random_tree(tmp_path / "src", seed=5, entries=50, chunk_size=CS)
    calls = []
    r = build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs",
              options=BuildOptions(chunk_size=CS, progress=lambda d, t: calls.append((d, t))))
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink()
                and p.stat().st_nlink == 1) + sum(
        {p.stat().st_ino: p.stat().st_size for p in src.rglob("*")
         if p.is_file() and not p.is_symlink() and p.stat().st_nlink > 1}.values())
    assert calls and all(t == total for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1][0] == total == r.stats.bytes_read


def test_repeatable_drops_owners(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    if os.geteuid() == 0:
        os.chown(src / "f", 1234, 5678)
    build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs",
          options=BuildOptions(repeatable=True))
    with open_image(tmp_path / "boot") as image:
        assert not image.flags & SuperFlags.EXPLICIT_UID_GID
        a = image.getattr(image.resolve("/f"))
        assert (a.uid, a.gid) == (0, 0)


def test_prefetch_table_from_paths(tmp_path):
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f").write_bytes(b"x")
    (src / "g").write_bytes(b"y")
    build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs",
          options=BuildOptions(prefetch=["/g", "/a/b", "/missing", "/g"]))
    with open_image(tmp_path / "boot") as image:
        assert image.prefetch_inodes() == [image.resolve("/g"), image.resolve("/a/b")]


def test_inline_meta_with_blob_toc(tmp_path):
    src = make_random_tree(tmp_path / "src", seed=7, entries=30, chunk_size=CS)
    r = build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs",
              options=BuildOptions(chunk_size=CS, blob_toc=True, inline_meta=True))
    blob = r.blob_path.read_bytes()
    assert r.blob_id == hashlib.sha256(blob).hexdigest()
    assert r.blob_info.features & BlobFeatures.INLINED_FS_META
    # the bootstrap inside the blob, found through the ToC (the last section), zstd-compressed
    toc_size = tarfile.TarInfo.frombuf(blob[-512:], "utf-8", "strict").size
    entries = blob[-512 - toc_size:-512]
    toc = {name.rstrip(b"\0"): (flags, off, csize, usize) for flags, name, off, csize, usize in
           (struct.unpack_from("<I4x16s32xQQQ", entries, o) for o in range(0, len(entries), 128))}
    flags, off, csize, usize = toc[b"image.boot"]
    assert flags == 0x2  # zstd
    inline = get_compressor("zstd").decompress(blob[off:off + csize], usize)
    with open_bootstrap_bytes(inline, "inline") as image:
        assert [b.blob_id for b in image.blobs] == [BLOB_ID_INLINE_PLACEHOLDER]
        assert image.blobs[0].blob_toc_digest == bytes(32)
    # the separate bootstrap carries the real id, size and ToC digest, and reads the data
    with open_image(tmp_path / "boot") as image:
        b = image.blobs[0]
        assert (b.blob_id, b.compressed_size) == (r.blob_id, len(blob))
        assert b.blob_toc_digest == hashlib.sha256(blob[-b.blob_toc_size:]).digest()
    assert diff_snapshots(snapshot_dir(src), snapshot_bootstrap(tmp_path / "boot", tmp_path / "blobs")) == []


def test_inline_meta_alone_without_bootstrap_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    r = build(src, "dir-rafs", blob=tmp_path / "blob", options=BuildOptions(inline_meta=True))
    assert r.bootstrap_path is None and r.blob_path == tmp_path / "blob"
    assert r.blobs == []  # no data: the blob only carries the metadata
    assert (tmp_path / "blob").read_bytes()[-512:-412].rstrip(b"\0") == b"image.boot"


def test_blob_id_override_and_blob_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"hello")
    r = build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs",
              options=BuildOptions(blob_id="ab" * 32))
    assert r.blob_path == tmp_path / "blobs" / ("ab" * 32)
    with open_image(tmp_path / "boot") as image:
        assert image.blobs[0].blob_id == "ab" * 32


def test_blob_into_a_fifo(tmp_path):
    src = make_random_tree(tmp_path / "src", seed=9, entries=20, chunk_size=CS)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = bytearray()

    def drain():
        with open(fifo, "rb") as f:
            while block := f.read(65536):
                received.extend(block)

    t = threading.Thread(target=drain)
    t.start()
    r = build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob=fifo, options=BuildOptions(chunk_size=CS))
    t.join(10)
    assert r.blob_id == hashlib.sha256(received).hexdigest()
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / r.blob_id).write_bytes(received)
    assert diff_snapshots(snapshot_dir(src), snapshot_bootstrap(tmp_path / "boot", tmp_path / "blobs")) == []


def test_outputs_only(tmp_path):
    src = make_random_tree(tmp_path / "src", seed=1, entries=20, chunk_size=CS)
    before = snapshot_dir(src)
    out = tmp_path / "out"
    build(src, "dir-rafs", bootstrap=out / "boot", blob_dir=out / "blobs")
    assert diff_snapshots(before, snapshot_dir(src)) == []  # the source is untouched
    assert sorted(p.relative_to(out).parts[0] for p in out.rglob("*")) == ["blobs", "blobs", "boot"]


def test_outputs_inside_the_source_are_not_included(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data" * 1000)
    build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=src / "blobs")
    with open_image(tmp_path / "boot") as image:
        names = [p for p, _ in image.walk()]
    assert names == [b"/", b"/blobs", b"/f"]  # the blob being written is not part of the image
