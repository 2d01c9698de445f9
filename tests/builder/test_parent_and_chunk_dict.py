"""Builds on top of existing images: --parent-bootstrap (layer applied on the parent tree) and
--chunk-dict (reuse chunks of another image, recording only the blobs really used)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nydus_testkit.samples import payload, random_bytes
from nydus_testsupport.layers import OPAQUE, WHITEOUT, make_layer, overlay_mount, overlay_unavailable
from nydus_testsupport.tree_compare import diff_snapshots, snapshot_bootstrap, snapshot_dir

from nydus_core.builder import BuildOptions, build, merge
from nydus_core.errors import BuildError
from nydus_core.rafs.image import open_image

CS = 0x1000
SHARED = random_bytes(5 * CS + 100, 1)


def _build(tmp: Path, src: Path, name: str, **opts):
    return build(src, "dir-rafs", bootstrap=tmp / f"{name}.boot", blob_dir=tmp / "blobs",
                 options=BuildOptions(chunk_size=CS, **opts))


def _snap(tmp: Path, name: str):
    return snapshot_bootstrap(tmp / f"{name}.boot", tmp / "blobs")


def _blob_ids(boot: Path) -> list[str]:
    with open_image(boot) as image:
        return [b.blob_id for b in image.blobs]


def test_chunk_dict_reuses_chunks_and_lists_only_used_blobs(tmp_path):
    dict_src = make_layer(tmp_path / "dict", {"lib.so": SHARED, "other": payload(3 * CS, 2)})
    d = _build(tmp_path, dict_src, "dict")
    src = make_layer(tmp_path / "app", {"copy-of-lib.so": SHARED, "new": random_bytes(2 * CS, 3)})
    r = _build(tmp_path, src, "app", chunk_dict=f"bootstrap={tmp_path / 'dict.boot'}")
    assert r.stats.chunks_new == 2 and r.stats.chunks_dedup == 6
    assert r.blob_info.chunk_count == 2  # only the new chunks went into the app's blob
    assert _blob_ids(tmp_path / "app.boot") == [r.blob_id, d.blob_id]
    assert diff_snapshots(snapshot_dir(src), _snap(tmp_path, "app")) == []


def test_unused_chunk_dict_blobs_are_not_recorded(tmp_path):
    _build(tmp_path, make_layer(tmp_path / "dict", {"lib.so": SHARED}), "dict")
    r = _build(tmp_path, make_layer(tmp_path / "app", {"x": b"unrelated"}), "app",
               chunk_dict=tmp_path / "dict.boot")
    assert _blob_ids(tmp_path / "app.boot") == [r.blob_id]


def test_everything_from_the_dict_means_no_own_blob(tmp_path):
    d = _build(tmp_path, make_layer(tmp_path / "dict", {"lib.so": SHARED}), "dict")
    src = make_layer(tmp_path / "app", {"a": SHARED, "b/c": SHARED[:CS]})
    r = _build(tmp_path, src, "app", chunk_dict=tmp_path / "dict.boot")
    assert r.blob_info is None and r.blob_path is None
    assert _blob_ids(tmp_path / "app.boot") == [d.blob_id]
    assert diff_snapshots(snapshot_dir(src), _snap(tmp_path, "app")) == []


def test_chunk_dict_must_match_chunk_size_and_digester(tmp_path):
    src = make_layer(tmp_path / "dict", {"lib.so": SHARED})
    build(src, "dir-rafs", bootstrap=tmp_path / "d2.boot", blob_dir=tmp_path / "blobs",
          options=BuildOptions(chunk_size=2 * CS))
    build(src, "dir-rafs", bootstrap=tmp_path / "d3.boot", blob_dir=tmp_path / "blobs",
          options=BuildOptions(chunk_size=CS, digester="sha256"))
    with pytest.raises(BuildError, match=r"d2\.boot: chunk dict uses chunk size 0x2000"):
        _build(tmp_path, src, "x", chunk_dict=tmp_path / "d2.boot")
    with pytest.raises(BuildError, match=r"d3\.boot: chunk dict uses another chunk digester"):
        _build(tmp_path, src, "y", chunk_dict=tmp_path / "d3.boot")
    with pytest.raises(BuildError, match=r"missing\.boot: chunk dict not found"):
        _build(tmp_path, src, "z", chunk_dict=tmp_path / "missing.boot")


LOWER = {"etc/conf": b"conf v1\n", "lib/big.so": SHARED, "var/cache/a": b"a\n", "var/cache/b": b"b\n",
         "tmp/junk": b"junk\n", "bin/tool": payload(2 * CS, 9)}
UPPER = {"etc/conf": b"conf v2\n", "var/cache": OPAQUE, "var/cache/c": b"c\n", "tmp/junk": WHITEOUT,
         "bin/tool2": payload(2 * CS, 9), "lib/big.so": SHARED}


def test_parent_bootstrap_applies_the_layer_and_keeps_parent_blobs(tmp_path):
    p = _build(tmp_path, make_layer(tmp_path / "lower", LOWER), "parent")
    upper = make_layer(tmp_path / "upper", UPPER)
    r = _build(tmp_path, upper, "child", parent_bootstrap=tmp_path / "parent.boot")
    # unchanged content is found in the parent's chunks: only conf v2 and c are new
    assert r.stats.chunks_new == 2
    assert _blob_ids(tmp_path / "child.boot") == [p.blob_id, r.blob_id]
    snap = snapshot_bootstrap(tmp_path / "child.boot", tmp_path / "blobs")
    assert set(snap) == {b".", b"etc", b"etc/conf", b"lib", b"lib/big.so", b"var", b"var/cache",
                         b"var/cache/c", b"tmp", b"bin", b"bin/tool", b"bin/tool2"}
    # the same result as building the layer alone and merging it onto the parent
    _build(tmp_path, upper, "alone")
    merge([tmp_path / "parent.boot", tmp_path / "alone.boot"], bootstrap=tmp_path / "merged")
    assert diff_snapshots(snapshot_bootstrap(tmp_path / "merged", tmp_path / "blobs"), snap) == []


def test_parent_bootstrap_overlayfs_spec_matches_the_kernel(tmp_path):
    if reason := overlay_unavailable():
        pytest.skip(reason)
    lower = make_layer(tmp_path / "lower", LOWER, "overlayfs")
    upper = make_layer(tmp_path / "upper", UPPER, "overlayfs")
    _build(tmp_path, lower, "parent")
    _build(tmp_path, upper, "child", parent_bootstrap=tmp_path / "parent.boot", whiteout_spec="overlayfs")
    with overlay_mount([lower, upper], tmp_path / "mnt") as mnt:
        expected = snapshot_dir(mnt)
    assert diff_snapshots(expected, snapshot_bootstrap(tmp_path / "child.boot", tmp_path / "blobs")) == []


def test_standalone_layer_keeps_whiteouts_for_merge(tmp_path):
    _build(tmp_path, make_layer(tmp_path / "upper", UPPER), "alone")
    snap = snapshot_bootstrap(tmp_path / "alone.boot", tmp_path / "blobs")
    assert {b"tmp/.wh.junk", b"var/cache/.wh..wh..opq"} <= set(snap)


def test_whiteout_spec_none_keeps_markers_on_a_parent(tmp_path):
    _build(tmp_path, make_layer(tmp_path / "lower", LOWER), "parent")
    _build(tmp_path, make_layer(tmp_path / "upper", UPPER), "child",
           parent_bootstrap=tmp_path / "parent.boot", whiteout_spec="none")
    snap = snapshot_bootstrap(tmp_path / "child.boot", tmp_path / "blobs")
    assert {b"tmp/junk", b"tmp/.wh.junk", b"var/cache/a", b"var/cache/.wh..wh..opq"} <= set(snap)
