"""``create -t targz-ref`` / ``tar-ref``: images whose data blob is the original layer (ZRAN).

Real layers (single-member, two-member and bgzip-shaped gzip, plain tar) of a sample tree plus a
file spanning many zran contexts and empty files; every file is compared with the tree through the
tools' reader, the library API (read pipeline, localfs backend, blobcache), ``nydus-image
check/unpack`` and a FUSE mount; a corrupt span is a digest error with validation on.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from nydus_testsupport.fuse import NydusdProcess, fuse_unavailable, snapshot_tree
from nydus_testsupport.tree_compare import diff_snapshots, snapshot_bootstrap, snapshot_dir
from nydus_testsupport.trees import make_sample_tree, tar_directory

from nydus_core.builder import BuildOptions, build
from nydus_core.cli.image import cli
from nydus_core.cli.runner import run_main
from nydus_core.errors import BuildError, IntegrityError
from nydus_core.fs import open_fs
from nydus_core.plugins import compressor_by_id
from nydus_core.rafs.blobmeta import read_blob_meta_full
from nydus_core.rafs.constants import BlobFeatures
from nydus_core.rafs.image import open_image

CS = 0x10000


def _text(n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghij \n") for _ in range(rnd.randint(2, 9))) for _ in range(400)]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" "
    return bytes(out[:n])


def _gzip_members(data: bytes, cuts: list[int]) -> bytes:
    bounds = [0, *cuts, len(data)]
    return b"".join(gzip.compress(data[a:b], compresslevel=6, mtime=0) for a, b in itertools.pairwise(bounds))


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("ref")
    src = make_sample_tree(work / "src", chunk_size=CS, big_dir=50).root
    (src / "span").mkdir()
    (src / "span" / "text.log").write_bytes(_text(4_500_000, 1))  # many contexts, many chunks
    (src / "span" / "random.bin").write_bytes(random.Random(2).randbytes(700_000))
    (src / "span" / "empty-a").write_bytes(b"")
    (src / "span" / "empty-b").write_bytes(b"")
    tar = tar_directory(src, work / "layer.tar")
    data = tar.read_bytes()
    single = subprocess.run(["gzip", "-n", "-c"], input=data, capture_output=True, check=True).stdout
    (work / "single.tar.gz").write_bytes(single)
    (work / "two.tar.gz").write_bytes(_gzip_members(data, [len(data) // 2 + 777]))
    (work / "bgzip.tar.gz").write_bytes(_gzip_members(data, list(range(0xFF00, len(data), 0xFF00))))
    return {"src": src, "tar": tar, "single": work / "single.tar.gz", "two": work / "two.tar.gz",
            "bgzip": work / "bgzip.tar.gz"}


def _build(layer: Path, out: Path, kind: str = "targz-ref"):
    return build(layer, kind, bootstrap=out / "image.boot", blob_dir=out / "blobs",
                 options=BuildOptions(chunk_size=CS))


@pytest.mark.parametrize("name", ["single", "two", "bgzip"])
def test_targz_ref_reads_every_file_like_the_tree(layers, name, tmp_path):
    layer = layers[name]
    r = _build(layer, tmp_path)
    digest = hashlib.sha256(layer.read_bytes()).hexdigest()
    info = r.blob_info
    assert info is not None and info.blob_id == digest and r.blobs[-1].blob_id == digest
    assert info.compressed_size == layer.stat().st_size
    assert info.features == 0x7000_003D  # ALIGNED|CHUNK_INFO_V2|ZRAN|SEPARATE|digests|tar|ToC
    meta = r.blob_path
    assert meta is not None and meta.name == info.blob_meta_digest.hex()
    assert hashlib.sha256(meta.read_bytes()).digest() == info.blob_meta_digest
    assert info.blob_meta_size == meta.stat().st_size < layer.stat().st_size // 10
    assert (tmp_path / "blobs" / digest).read_bytes() == layer.read_bytes()
    got = snapshot_bootstrap(tmp_path / "image.boot", tmp_path / "blobs")  # every chunk verified
    assert diff_snapshots(snapshot_dir(layers["src"]), got, ignore_paths=[b"socket"]) == []


def test_blob_meta_follows_the_format(layers, tmp_path):
    """Field by field as rafs-format.md §6.8 lays it out, read back by the same parser that reads
    upstream's fixture."""
    r = _build(layers["two"], tmp_path)
    info = r.blob_info
    assert info is not None and r.blob_path is not None
    meta = r.blob_path.read_bytes()
    header, records, table = read_blob_meta_full(lambda o, n: meta[o:o + n], info,
                                                 compressor_for=compressor_by_id)
    assert table is not None
    assert header.zran_offset == 24 * header.ci_entries
    assert header.ci_uncompressed_size == 24 * header.ci_entries + header.zran_size
    assert header.zran_size == 40 * len(table.contexts) + len(table.dictionaries)
    assert len(table.contexts) >= 4  # about one per MiB of tar: the 4.5 MB file spans several
    assert table.contexts[0].in_offset == 10 and table.contexts[0].dict_size == 0
    assert sum(c.dict_size for c in table.contexts) == len(table.dictionaries)
    tar = layers["tar"].read_bytes()
    last = -1
    for c in table.contexts:
        window = table.dictionaries[c.dict_offset:c.dict_offset + c.dict_size]
        assert window == tar[c.out_offset - c.dict_size:c.out_offset]
    for rec in records:
        assert rec.is_compressed and rec.zran_context is not None and rec.zran_context >= last
        last = rec.zran_context
        ctx = table.contexts[rec.zran_context]
        assert (ctx.out_offset + rec.zran_offset) % 512 == 0
        assert rec.zran_offset + rec.uncompressed_size <= ctx.out_len
        assert ctx.in_offset <= rec.compressed_offset
        assert rec.compressed_offset + rec.compressed_size <= ctx.in_offset + ctx.in_len
    # compressed ranges strictly increase (readers key chunks in flight by their offset)
    spans = [(r.compressed_offset, r.compressed_offset + r.compressed_size) for r in records]
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans))
    # the ToC at the end of the RAFS blob, and the chunk digests it names
    assert meta[-512:].split(b"\0", 1)[0] == b"rafs.blob.toc"
    with open_image(tmp_path / "image.boot") as image:
        ids = {c.index: c.block_id for _p, ino in image.walk() if image.getattr(ino).is_reg
               for c in image.chunks(ino)}
    at = meta.index(b"blob.digest\0") - 32 * len(records)
    assert all(meta[at + 32 * i:at + 32 * i + 32] == d for i, d in ids.items())


@pytest.mark.parametrize("name", ["bgzip", "two"])
def test_library_api_and_cache_read_identical_bytes(layers, tmp_path, name):
    _build(layers[name], tmp_path)
    src = layers["src"]
    for cache in (None, tmp_path / "cache"):
        for _round in range(2):
            with open_fs(tmp_path / "image.boot", blob_dir=tmp_path / "blobs",
                         cache_dir=cache) as fs:
                for rel in ("span/text.log", "span/random.bin", "span/empty-a"):
                    assert fs.read_bytes(rel) == (src / rel).read_bytes()
                with fs.open("span/text.log") as f:  # a read in the middle of a late context
                    f.seek(3_333_333)
                    assert f.read(5000) == (src / "span/text.log").read_bytes()[3_333_333:3_338_333]


def test_check_and_unpack(layers, tmp_path):
    _build(layers["single"], tmp_path)
    boot, blobs = tmp_path / "image.boot", tmp_path / "blobs"
    assert run_main(cli, ["check", "-B", str(boot), "-D", str(blobs)]) == 0
    out = tmp_path / "unpacked.tar"
    assert run_main(cli, ["unpack", "-B", str(boot), "-D", str(blobs), "--output", str(out)]) == 0
    import tarfile

    with tarfile.open(out) as tf:
        f = tf.extractfile("span/text.log") or tf.extractfile("./span/text.log")
        assert f is not None and f.read() == (layers["src"] / "span/text.log").read_bytes()


def test_tar_ref_chunks_are_ranges_of_the_tar(layers, tmp_path):
    r = _build(layers["tar"], tmp_path, "tar-ref")
    info = r.blob_info
    assert info is not None and info.features & BlobFeatures.SEPARATE
    assert not info.features & BlobFeatures.ZRAN
    tar = layers["tar"].read_bytes()
    with open_image(tmp_path / "image.boot") as image:
        for _path, ino in image.walk():
            for c in image.chunks(ino) if image.getattr(ino).is_reg else ():
                assert hashlib.sha256(tar[c.compressed_offset:c.compressed_offset + c.uncompressed_size]
                                      ).digest() == c.block_id
    got = snapshot_bootstrap(tmp_path / "image.boot", tmp_path / "blobs")
    assert diff_snapshots(snapshot_dir(layers["src"]), got, ignore_paths=[b"socket"]) == []


def _corrupt_copy(blobs: Path, digest: str, offset: int) -> None:
    path = blobs / digest
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.unlink()  # a hard link to the test's layer: replace, never write through it
    path.write_bytes(bytes(data))


def test_corrupt_span_is_a_digest_error_with_validation(layers, tmp_path):
    r = _build(layers["single"], tmp_path)
    info = r.blob_info
    assert info is not None
    # corrupt a literal-heavy region late in the stream (inside the big text file's span)
    size = layers["single"].stat().st_size
    _corrupt_copy(tmp_path / "blobs", info.blob_id, size * 3 // 5)
    cfg = {"device": {"backend": {"type": "localfs", "config": {"dir": str(tmp_path / "blobs")}}},
           "mode": "direct", "digest_validate": True}
    (tmp_path / "v.json").write_text(json.dumps(cfg))
    with open_fs(tmp_path / "image.boot", config=str(tmp_path / "v.json")) as fs, \
            pytest.raises((IntegrityError, OSError)) as err:
        for rel in ("span/text.log", "span/random.bin"):
            fs.read_bytes(rel)
    assert "digest" in str(err.value) or "gzip" in str(err.value) or "invalid" in str(err.value)
    assert run_main(cli, ["check", "-B", str(tmp_path / "image.boot"), "-D", str(tmp_path / "blobs")]) != 0


def test_bad_gzip_layers_fail_naming_the_layer(layers, tmp_path):
    data = bytearray(layers["two"].read_bytes())
    # the first member's CRC: 8 bytes before the second member's header
    second = data.index(b"\x1f\x8b\x08", 100)
    data[second - 8] ^= 1
    bad = tmp_path / "badcrc.tar.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(BuildError, match=r"badcrc\.tar\.gz: gzip member 0 .*CRC-32 mismatch"):
        _build(bad, tmp_path / "a")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(layers["two"].read_bytes()[:-5])
    with pytest.raises(BuildError, match=r"cut\.tar\.gz: gzip member 1 .*truncated"):
        _build(cut, tmp_path / "b")


def test_cli_create_targz_ref(layers, tmp_path, capsys):
    out = tmp_path / "o.json"
    rc = run_main(cli, ["create", "-t", "targz-ref", str(layers["single"]), "-B", str(tmp_path / "b.boot"),
                        "-D", str(tmp_path / "blobs"), "-J", str(out)])
    assert rc == 0
    summary = json.loads(out.read_text())
    assert summary["blob_id"] == hashlib.sha256(layers["single"].read_bytes()).hexdigest()
    rc = run_main(cli, ["create", "-t", "targz-ref", "-", "-B", str(tmp_path / "c.boot"), "-D",
                        str(tmp_path / "blobs")])
    assert rc != 0
    assert "needs the layer as a file" in capsys.readouterr().err


@pytest.mark.parametrize("driver", ["fusedev", "erofs"])
def test_fuse_mount_of_a_targz_ref_image(layers, tmp_path, driver):
    """nydusd serves a targz-ref image with both drivers (erofs: the kernel reads the bootstrap and
    asks nydusd for blob ranges, which come through the ZRAN path)."""
    reason = fuse_unavailable()
    if reason is None and driver == "erofs":
        from nydus_testsupport.erofs import kernel_mount_unavailable

        reason = kernel_mount_unavailable()
    if reason:
        pytest.skip(reason)
    _build(layers["bgzip"], tmp_path)
    cfg = tmp_path / "nydusd.json"
    cfg.write_text(json.dumps({
        "device": {"backend": {"type": "localfs", "config": {"dir": str(tmp_path / "blobs")}},
                   "cache": {"type": "blobcache", "config": {"work_dir": str(tmp_path / "cache")}}},
        "mode": "direct", "digest_validate": True, "enable_xattr": True,
    }))
    mnt = Path(tempfile.mkdtemp(prefix="nydus-zran-mnt-"))
    try:
        with NydusdProcess(mnt, ["--fs-driver", driver, "-C", cfg, "-B", tmp_path / "image.boot"]):
            want = snapshot_tree(layers["src"] / "span")
            got = snapshot_tree(mnt / "span")
            assert want == got
            assert (mnt / "span" / "text.log").read_bytes() == (layers["src"] / "span/text.log").read_bytes()
    finally:
        os.rmdir(mnt)
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def test_read_blob_gives_the_layout_of_a_zran_blob(layers, tmp_path):
    """What the kernel EROFS driver reads as the blob's device: every chunk at its uncompressed
    offset, fetched and inflated through the ZRAN path, as the blobcache keeps it."""
    _build(layers["two"], tmp_path)
    cache = tmp_path / "cache"
    with open_fs(tmp_path / "image.boot", blob_dir=tmp_path / "blobs", cache_dir=cache) as fs:
        pipe = fs.pipeline
        assert pipe is not None
        [info] = fs.image.blobs
        want = bytearray(info.uncompressed_size)
        for path, ino in fs.image.walk():
            if not fs.image.getattr(ino).is_reg:
                continue
            data = (layers["src"] / os.fsdecode(path).lstrip("/")).read_bytes()
            for c in fs.image.chunks(ino):
                want[c.uncompressed_offset:c.uncompressed_offset + c.uncompressed_size] = \
                    data[c.file_offset:c.file_offset + c.uncompressed_size]
        assert pipe.read_blob(0, 0, len(want)) == bytes(want)
        middle = len(want) // 2 + 123
        assert pipe.read_blob(0, middle, 70_000) == bytes(want[middle:middle + 70_000])
        assert pipe.wait_idle(10)
        assert (cache / f"{info.blob_id}.blob.data").read_bytes()[:len(want)] == bytes(want)


def test_files_of_one_context_fetch_it_once(layers, tmp_path):
    """A context is fetched whole and inflated once; other files in it are served without a fetch
    (what keeps the bytes a cold start fetches close to a fully converted image's)."""
    r = _build(layers["single"], tmp_path)
    info = r.blob_info
    assert info is not None and r.blob_path is not None
    meta = r.blob_path.read_bytes()
    _h, records, table = read_blob_meta_full(lambda o, n: meta[o:o + n], info,
                                             compressor_for=compressor_by_id)
    assert table is not None
    with open_image(tmp_path / "image.boot") as image:
        by_ctx: dict[int, list[bytes]] = {}
        for path, ino in image.walk():
            chunks = image.chunks(ino) if image.getattr(ino).is_reg else []
            if len(chunks) == 1:
                ctx = records[chunks[0].index].zran_context
                assert ctx is not None
                by_ctx.setdefault(ctx, []).append(path)
    ctx, paths = max(by_ctx.items(), key=lambda kv: len(kv[1]))
    assert len(paths) >= 3
    with open_fs(tmp_path / "image.boot", blob_dir=tmp_path / "blobs") as fs:
        assert fs.pipeline is not None
        for i, path in enumerate(paths):
            want = (layers["src"] / os.fsdecode(path).lstrip("/")).read_bytes()
            assert fs.read_bytes(os.fsdecode(path)) == want
            backend = fs.pipeline.metrics()["backend"]
            assert backend["read_count"] == 1, (i, backend)
        c = table.contexts[ctx]
        assert backend["read_amount_total"] == c.in_len


def test_corrupt_span_without_validation_errors_or_differs(layers, tmp_path):
    """With digest validation off a corrupt span is an inflate error or, where inflate cannot tell,
    other bytes: as for any chunk read without validation."""
    r = _build(layers["single"], tmp_path)
    assert r.blob_info is not None
    _corrupt_copy(tmp_path / "blobs", r.blob_info.blob_id, layers["single"].stat().st_size * 3 // 5)
    cfg = {"device": {"backend": {"type": "localfs", "config": {"dir": str(tmp_path / "blobs")}}},
           "mode": "direct", "digest_validate": False}
    (tmp_path / "n.json").write_text(json.dumps(cfg))
    with open_fs(tmp_path / "image.boot", config=str(tmp_path / "n.json")) as fs:
        try:
            got = fs.read_bytes("span/text.log")
        except (IntegrityError, OSError) as exc:
            assert "gzip" in str(exc) or "invalid" in str(exc) or "decode" in str(exc)
        else:
            assert got != (layers["src"] / "span/text.log").read_bytes()


def test_a_zran_image_serves_as_chunk_dict(layers, tmp_path):
    """A later build with the zran image as chunk dict references its chunks (no data stored again)
    and reads them through the zran path."""
    _build(layers["single"], tmp_path / "ref")
    extra = tmp_path / "tree"
    extra.mkdir()
    (extra / "copy.log").write_bytes((layers["src"] / "span/text.log").read_bytes())
    (extra / "new.txt").write_bytes(b"only here\n" * 100)
    blobs = tmp_path / "ref" / "blobs"
    r = build(extra, "dir-rafs", bootstrap=tmp_path / "d.boot", blob_dir=blobs,
              options=BuildOptions(chunk_size=CS, digester="sha256",
                                   chunk_dict=str(tmp_path / "ref" / "image.boot")))
    assert r.stats.chunks_dedup >= 4_500_000 // CS
    assert any(b.features & BlobFeatures.ZRAN for b in r.blobs)
    cfg = {"device": {"backend": {"type": "localfs", "config": {"dir": str(blobs)}}},
           "mode": "direct", "digest_validate": True}
    (tmp_path / "v.json").write_text(json.dumps(cfg))
    with open_fs(tmp_path / "d.boot", config=str(tmp_path / "v.json")) as fs:
        assert fs.read_bytes("copy.log") == (layers["src"] / "span/text.log").read_bytes()
        assert fs.read_bytes("new.txt") == b"only here\n" * 100


def test_original_layer_placed_by_copy_across_file_systems(layers, tmp_path):
    """A layer on another file system (no hard link possible) is copied through a locked temporary
    output: the blob dir then holds it under its digest and no temporary name."""
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the test directory's file system: no cross-device layer to copy")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        layer = Path(shm) / "single.tar.gz"
        shutil.copyfile(layers["single"], layer)
        r = _build(layer, tmp_path)
        assert r.blob_info is not None
        placed = tmp_path / "blobs" / r.blob_info.blob_id
        assert placed.read_bytes() == layer.read_bytes() and placed.stat().st_nlink == 1
    assert [p.name for p in (tmp_path / "blobs").iterdir() if p.name.startswith(".")] == []
