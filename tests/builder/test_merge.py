"""merge: whiteouts (OCI and overlayfs) checked against the kernel's overlayfs, blob tables, per-layer
blob lists, inline-meta placeholder ids."""

from __future__ import annotations

import hashlib
import struct
import tarfile
from pathlib import Path

import pytest
from nydus_testsupport.layers import OPAQUE, WHITEOUT, make_layer, overlay_mount, overlay_unavailable
from nydus_testsupport.tree_compare import diff_snapshots, snapshot_bootstrap, snapshot_dir

from nydus_core.builder import BuildOptions, build, merge
from nydus_core.errors import BuildError, UsageError
from nydus_core.plugins import get_compressor
from nydus_core.rafs.constants import BLOB_ID_INLINE_PLACEHOLDER
from nydus_core.rafs.image import open_image

CS = 0x1000

LAYERS = [
    {  # lowest
        "a/b.txt": b"b v1\n", "a/keep.txt": b"keep\n", "c.txt": b"c v1\n", "d/e.txt": b"e\n",
        "d/sub/f.txt": b"f\n", "hl1": b"hard link data\n", "hl2": ("link", "hl1"), "gone/x": b"x\n",
        "lnk": ("->", "a/b.txt"), "big.bin": bytes(range(256)) * 64,
    },
    {
        "c.txt": WHITEOUT, "d": OPAQUE, "d/new.txt": b"new\n", "a/b.txt": b"b v2\n", "gone": WHITEOUT,
        "g/h.txt": b"h\n", "hl2": WHITEOUT, "lnk": b"now a file\n",
    },
    {
        "c.txt": b"c v3\n", "a/keep.txt": WHITEOUT, "d/sub2/y": b"y\n", "gone/again": b"again\n",
        "a/newer.txt": bytes(range(256)) * 64,  # big.bin's content again, in another layer's blob
    },
]


def _build_layers(tmp: Path, spec: str, *, source: str = "dir", **opts) -> list[Path]:
    boots = []
    for k, layer in enumerate(LAYERS):
        d = make_layer(tmp / spec / f"layer{k}", layer, spec)
        boot = tmp / spec / f"layer{k}.boot"
        src, kind = d, "dir-rafs"
        if source == "tar":
            src, kind = tmp / spec / f"layer{k}.tar", "tar-rafs"
            with tarfile.open(src, "w", format=tarfile.PAX_FORMAT) as tf:
                tf.add(d, arcname=".")
        build(src, kind, bootstrap=boot, blob_dir=tmp / "blobs", options=BuildOptions(chunk_size=CS, **opts))
        boots.append(boot)
    return boots


def _expected_oci() -> set[bytes]:
    """The union of LAYERS by the OCI rules, worked out by hand from the spec above."""
    return {b".", b"a", b"a/b.txt", b"a/newer.txt", b"c.txt", b"d", b"d/new.txt", b"d/sub2", b"d/sub2/y",
            b"hl1", b"g", b"g/h.txt", b"gone", b"gone/again", b"lnk", b"big.bin"}


def test_oci_merge_by_the_rules(tmp_path):
    boots = _build_layers(tmp_path, "oci")
    r = merge(boots, bootstrap=tmp_path / "merged")
    snap = snapshot_bootstrap(tmp_path / "merged", tmp_path / "blobs")
    assert set(snap) == _expected_oci()
    assert snap[b"a/b.txt"].sha256 == hashlib.sha256(b"b v2\n").hexdigest()
    assert snap[b"c.txt"].sha256 == hashlib.sha256(b"c v3\n").hexdigest()
    assert snap[b"lnk"].kind == "reg"
    assert snap[b"hl1"].link_group is None  # its other name was whited out
    with open_image(tmp_path / "merged") as image:
        assert image.getattr(image.resolve("/hl1")).nlink == 1
        ids = [b.blob_id for b in image.blobs]
    # every layer's blob is kept, in layer order
    layer_ids = []
    for b in boots:
        with open_image(b) as layer:
            layer_ids += [x.blob_id for x in layer.blobs]
    assert ids == layer_ids and len(ids) == 3 and [b.blob_id for b in r.blobs] == ids


def test_oci_and_overlayfs_merges_match_the_kernel_overlayfs(tmp_path):
    if reason := overlay_unavailable():
        pytest.skip(reason)
    boots_ovl = _build_layers(tmp_path, "overlayfs")
    boots_oci = _build_layers(tmp_path, "oci", source="tar")
    with overlay_mount([tmp_path / "overlayfs" / f"layer{k}" for k in range(3)], tmp_path / "mnt") as mnt:
        expected = snapshot_dir(mnt)
    assert set(expected) == _expected_oci()  # the kernel agrees with the hand-worked union
    merge(boots_ovl, bootstrap=tmp_path / "m-ovl", whiteout_spec="overlayfs")
    merge(boots_oci, bootstrap=tmp_path / "m-oci", whiteout_spec="oci")
    for m in ("m-ovl", "m-oci"):
        got = snapshot_bootstrap(tmp_path / m, tmp_path / "blobs")
        assert diff_snapshots(expected, got) == [], m
        assert not got[b"d"].xattrs  # the opaque marker is not part of the result


def test_merge_is_reproducible_and_keeps_shared_blobs_once(tmp_path):
    base = make_layer(tmp_path / "base", {"f": b"shared data" * 100})
    boot0 = tmp_path / "l0.boot"
    build(base, "dir-rafs", bootstrap=boot0, blob_dir=tmp_path / "blobs")
    # a layer built on the parent references the parent's blob too
    boot1 = tmp_path / "l1.boot"
    build(make_layer(tmp_path / "up", {"g": b"upper"}), "dir-rafs", bootstrap=boot1,
          blob_dir=tmp_path / "blobs", options=BuildOptions(parent_bootstrap=boot0))
    merge([boot0, boot1], bootstrap=tmp_path / "m1")
    merge([boot0, boot1], bootstrap=tmp_path / "m2")
    assert (tmp_path / "m1").read_bytes() == (tmp_path / "m2").read_bytes()
    with open_image(tmp_path / "m1") as image:
        assert len(image.blobs) == 2
    assert set(snapshot_bootstrap(tmp_path / "m1", tmp_path / "blobs")) == {b".", b"f", b"g"}


def _inline_bootstrap(blob: bytes) -> bytes:
    """The zstd bootstrap of an inline-meta blob, found through its ToC."""
    toc_size = tarfile.TarInfo.frombuf(blob[-512:], "utf-8", "strict").size
    entries = blob[-512 - toc_size:-512]
    for o in range(0, len(entries), 128):
        name, off, csize, usize = struct.unpack_from("<8x16s32xQQQ", entries, o)
        if name.rstrip(b"\0") == b"image.boot":
            return get_compressor("zstd").decompress(blob[off:off + csize], usize)
    raise AssertionError("no image.boot")


def _inline_layers(tmp: Path) -> list[tuple[Path, str]]:
    """Per-layer bootstraps extracted from inline-meta blobs (as the snapshotter does), named
    ``layerN.boot``, with each blob's real id."""
    out = []
    for k, layer in enumerate(LAYERS[:2]):
        d = make_layer(tmp / f"src{k}", layer)
        r = build(d, "dir-rafs", blob_dir=tmp / "blobs",
                  options=BuildOptions(chunk_size=CS, inline_meta=True, blob_toc=True))
        boot = tmp / f"layer{k}.boot"
        boot.write_bytes(_inline_bootstrap(r.blob_path.read_bytes()))
        with open_image(boot) as image:
            assert [b.blob_id for b in image.blobs] == [BLOB_ID_INLINE_PLACEHOLDER]
        out.append((boot, r.blob_id))
    return out


def test_placeholder_ids_from_file_names(tmp_path):
    layers = _inline_layers(tmp_path)
    named = []
    for boot, blob_id in layers:
        target = tmp_path / blob_id
        boot.rename(target)
        named.append(target)
    merge(named, bootstrap=tmp_path / "merged")
    with open_image(tmp_path / "merged") as image:
        assert [b.blob_id for b in image.blobs] == [blob_id for _, blob_id in layers]
    assert set(snapshot_bootstrap(tmp_path / "merged", tmp_path / "blobs")) >= {b"a/b.txt", b"d/new.txt"}


def test_placeholder_ids_from_lists(tmp_path):
    layers = _inline_layers(tmp_path)
    boots = [b for b, _ in layers]
    ids = [i for _, i in layers]
    sizes = [(tmp_path / "blobs" / i).stat().st_size for i in ids]
    merge(boots, bootstrap=tmp_path / "m1", blob_digests=[f"sha256:{i}" for i in ids], blob_sizes=sizes)
    merge(boots, bootstrap=tmp_path / "m2", original_blob_ids=ids)
    for m in ("m1", "m2"):
        with open_image(tmp_path / m) as image:
            assert [b.blob_id for b in image.blobs] == ids
    with open_image(tmp_path / "m1") as image:
        assert [b.compressed_size for b in image.blobs] == sizes
    # ToC digests/sizes are applied to the layer's blob
    toc = [hashlib.sha256(b"toc%d" % k).hexdigest() for k in range(2)]
    merge(boots, bootstrap=tmp_path / "m3", original_blob_ids=ids, blob_toc_digests=toc,
          blob_toc_sizes=[1152, 1152])
    with open_image(tmp_path / "m3") as image:
        assert [b.blob_toc_digest.hex() for b in image.blobs] == toc
        assert [b.blob_toc_size for b in image.blobs] == [1152, 1152]


def test_placeholder_without_a_real_id_is_an_error(tmp_path):
    layers = _inline_layers(tmp_path)
    with pytest.raises(BuildError, match=r"layer0\.boot: blob 0 has the inline-meta placeholder id"):
        merge([b for b, _ in layers], bootstrap=tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_list_lengths_and_values_are_checked(tmp_path):
    boots = _build_layers(tmp_path, "oci")
    with pytest.raises(UsageError, match="blob digests has 1 entries but there are 3"):
        merge(boots, bootstrap=tmp_path / "m", blob_digests=["sha256:" + "0" * 64])
    with pytest.raises(UsageError, match="invalid blob digest 'nothex'"):
        merge(boots, bootstrap=tmp_path / "m", blob_digests=["nothex"] * 3)
    with pytest.raises(UsageError, match="at least one"):
        merge([], bootstrap=tmp_path / "m")


def test_layers_with_different_chunk_sizes_cannot_merge(tmp_path):
    a = make_layer(tmp_path / "a", {"f": b"1"})
    build(a, "dir-rafs", bootstrap=tmp_path / "a.boot", blob_dir=tmp_path / "blobs",
          options=BuildOptions(chunk_size=0x1000))
    build(a, "dir-rafs", bootstrap=tmp_path / "b.boot", blob_dir=tmp_path / "blobs",
          options=BuildOptions(chunk_size=0x2000))
    with pytest.raises(BuildError, match=r"b\.boot: chunk size 0x2000 differs"):
        merge([tmp_path / "a.boot", tmp_path / "b.boot"], bootstrap=tmp_path / "m")


def test_prefetch_tables_are_merged(tmp_path):
    a = make_layer(tmp_path / "a", {"x/one": b"1", "two": b"2"})
    b = make_layer(tmp_path / "b", {"three": b"3", "two": WHITEOUT})
    build(a, "dir-rafs", bootstrap=tmp_path / "a.boot", blob_dir=tmp_path / "blobs",
          options=BuildOptions(prefetch=["/x/one", "/two"]))
    build(b, "dir-rafs", bootstrap=tmp_path / "b.boot", blob_dir=tmp_path / "blobs",
          options=BuildOptions(prefetch=["/three"]))
    merge([tmp_path / "a.boot", tmp_path / "b.boot"], bootstrap=tmp_path / "m")
    with open_image(tmp_path / "m") as image:
        assert image.prefetch_inodes() == [image.resolve("/x/one"), image.resolve("/three")]
    merge([tmp_path / "a.boot", tmp_path / "b.boot"], bootstrap=tmp_path / "m2", prefetch=["/three"])
    with open_image(tmp_path / "m2") as image:
        assert image.prefetch_inodes() == [image.resolve("/three")]
