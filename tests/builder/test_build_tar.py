"""Building from tar streams (tar-rafs, targz-rafs): same image as the directory build, streaming
input, hostile member paths, duplicates, hard links, and the upstream tar fixtures."""

from __future__ import annotations

import io
import itertools
import logging
import os
import stat
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
from nydus_testsupport.fixtures import require_upstream
from nydus_testsupport.tree_compare import diff_snapshots, snapshot_bootstrap, snapshot_dir
from nydus_testsupport.trees import make_random_tree, make_sample_tree, tar_directory

from nydus_core.builder import BuildOptions, build
from nydus_core.errors import BuildError
from nydus_core.rafs.image import open_image

CS = 0x1000


def _member(name: str, data: bytes | None = None, **kw) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(info, k, v)
    if data is not None:
        info.size = len(data)
    return info, data


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _build(tmp: Path, source, kind: str = "tar-rafs", **opts):
    return build(source, kind, bootstrap=tmp / "boot", blob_dir=tmp / "blobs",
                 options=BuildOptions(chunk_size=CS, **opts))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tar")
    src = make_sample_tree(tmp / "src", chunk_size=CS, big_dir=300).root
    return tmp, src, tar_directory(src, tmp / "src.tar"), tar_directory(src, tmp / "src.tar.gz", gzip=True)


def test_tar_build_equals_the_source(sample, tmp_path):
    _tmp, src, tar, _tgz = sample
    r = _build(tmp_path, tar)
    assert r.stats.hardlinks == 3
    got = snapshot_bootstrap(tmp_path / "boot", tmp_path / "blobs")
    assert diff_snapshots(snapshot_dir(src), got, ignore_paths=[b"socket"]) == []  # tar has no sockets


def test_tar_and_targz_give_the_same_image(sample, tmp_path):
    _tmp, _src, tar, tgz = sample
    outs = {}
    for kind, source in (("tar-rafs", tar), ("targz-rafs", tgz)):
        d = tmp_path / kind
        r = _build(d, source, kind)
        outs[kind] = ((d / "boot").read_bytes(), r.blob_path.read_bytes())
    assert outs["tar-rafs"] == outs["targz-rafs"]


def test_streaming_from_a_pipe(sample, tmp_path):
    _tmp, _src, tar, _ = sample
    proc = subprocess.Popen(["cat", str(tar)], stdout=subprocess.PIPE)
    try:
        r = build(proc.stdout, "tar-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs",
                  options=BuildOptions(chunk_size=CS))
    finally:
        proc.stdout.close()
        proc.wait()
    ref = _build(tmp_path / "ref", tar)
    assert (tmp_path / "boot").read_bytes() == (tmp_path / "ref" / "boot").read_bytes()
    assert r.blob_id == ref.blob_id


def test_streaming_from_a_fifo_with_progress(tmp_path):
    src = make_random_tree(tmp_path / "src", seed=2, entries=30, chunk_size=CS)
    tar = tar_directory(src, tmp_path / "src.tar.gz", gzip=True)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(tar.read_bytes())

    t = threading.Thread(target=feed)
    t.start()
    calls = []
    _build(tmp_path, fifo, "targz-rafs", progress=lambda d, total: calls.append((d, total)))
    t.join(10)
    assert calls and all(total is None for _, total in calls)  # a fifo has no known size
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1][0] <= tar.stat().st_size
    assert diff_snapshots(snapshot_dir(src), snapshot_bootstrap(tmp_path / "boot", tmp_path / "blobs")) == []


def test_progress_counts_the_tar_file(tmp_path):
    src = make_random_tree(tmp_path / "src", seed=4, entries=30, chunk_size=CS)
    tar = tar_directory(src, tmp_path / "src.tar")
    calls = []
    _build(tmp_path, tar, progress=lambda d, total: calls.append((d, total)))
    size = tar.stat().st_size
    assert calls and all(total == size for _, total in calls) and 0 < calls[-1][0] <= size


def test_paths_outside_the_root_are_normalized_with_a_warning(tmp_path, caplog):
    tar = _tar(tmp_path / "evil.tar", [
        _member("../../escape.txt", b"up"),
        _member("/etc/abs.txt", b"abs"),
        _member("a/../../b/c.txt", b"c"),
        _member("ok/./d.txt", b"d"),
    ])
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="nydus.builder"):
        _build(out, tar)
    warned = caplog.text
    for name in ("../../escape.txt", "/etc/abs.txt", "a/../../b/c.txt"):
        assert name in warned
    assert "ok/./d.txt" not in warned
    with open_image(out / "boot") as image:
        assert sorted(p for p, _ in image.walk()) == [b"/", b"/b", b"/b/c.txt", b"/escape.txt", b"/etc",
                                                      b"/etc/abs.txt", b"/ok", b"/ok/d.txt"]
    # nothing was written anywhere but the outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar", "out"]
    assert sorted(p.name for p in out.iterdir()) == ["blobs", "boot"]


def test_duplicate_members_last_wins(tmp_path):
    tar = _tar(tmp_path / "dup.tar", [
        _member("f", b"first"),
        _member("keep", b"kept"),
        _member("hl", type=tarfile.LNKTYPE, linkname="f"),  # links the *first* f
        _member("f", b"second version", mode=0o600),
        _member("d", type=tarfile.DIRTYPE, mode=0o700),
        _member("d/x", b"x"),
        _member("d", type=tarfile.DIRTYPE, mode=0o755, mtime=42),  # attributes updated, children kept
        _member("keep", type=tarfile.SYMTYPE, linkname="f"),  # a symlink replaces a file
    ])
    _build(tmp_path, tar)
    snap = snapshot_bootstrap(tmp_path / "boot", tmp_path / "blobs")
    import hashlib

    assert snap[b"f"].sha256 == hashlib.sha256(b"second version").hexdigest() and snap[b"f"].mode == 0o600
    assert snap[b"hl"].sha256 == hashlib.sha256(b"first").hexdigest()
    assert snap[b"d"].mode == 0o755 and snap[b"d"].mtime_ns == 42 * 10**9 and b"d/x" in snap
    assert snap[b"keep"].kind == "lnk" and snap[b"keep"].target == b"f"


def test_hard_link_to_a_missing_target_is_an_error(tmp_path):
    tar = _tar(tmp_path / "bad.tar", [_member("a", b"a"),
                                      _member("b", type=tarfile.LNKTYPE, linkname="nope")])
    with pytest.raises(BuildError, match=r"bad\.tar: hard link b -> nope"):
        _build(tmp_path / "out", tar)
    assert not (tmp_path / "out" / "boot").exists()
    assert list((tmp_path / "out" / "blobs").iterdir()) == []  # the half-written blob was removed


def test_implicit_parent_directories(tmp_path):
    tar = _tar(tmp_path / "t.tar", [_member("x/y/z.txt", b"z", mtime=7)])
    _build(tmp_path, tar)
    with open_image(tmp_path / "boot") as image:
        a = image.getattr(image.resolve("/x/y"))
        assert a.is_dir and stat.S_IMODE(a.mode) == 0o755 and (a.uid, a.gid, a.mtime) == (0, 0, 0)


def test_pax_xattrs_and_nanosecond_mtimes(tmp_path):
    f, data = _member("f", b"data", mtime=1)
    f.pax_headers = {"SCHILY.xattr.user.k": "v", "SCHILY.xattr.trusted.t": "\udcff\x00bin",
                     "SCHILY.xattr.system.nfs4_acl": "ignored", "mtime": "1700000000.123456789",
                     "LIBARCHIVE.xattr.user.lib%20x": "aGVsbG8"}
    tar = _tar(tmp_path / "x.tar", [(f, data)])
    _build(tmp_path, tar)
    with open_image(tmp_path / "boot") as image:
        ino = image.resolve("/f")
        assert image.xattrs(ino) == {b"user.k": b"v", b"trusted.t": b"\xff\x00bin", b"user.lib x": b"hello"}
        a = image.getattr(ino)
        assert (a.mtime, a.mtime_nsec) == (1_700_000_000, 123_456_789)


def test_namespace_less_pax_xattrs_warn_naming_the_entry(tmp_path, caplog):
    f, data = _member("dir/f", b"data")
    f.pax_headers = {"SCHILY.xattr.foo": "bar", "SCHILY.xattr.user.ok": "1"}
    tar = _tar(tmp_path / "x.tar", [(f, data)])
    with caplog.at_level(logging.WARNING, logger="nydus.builder"):
        _build(tmp_path, tar)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("member dir/f" in w and "'foo'" in w and "dropped" in w for w in warnings), warnings
    assert not any("user.ok" in w for w in warnings)
    with open_image(tmp_path / "boot") as image:
        assert image.xattrs(image.resolve("/dir/f")) == {b"user.ok": b"1"}


def test_devices_fifos_and_symlinks_need_no_privileges(tmp_path):
    tar = _tar(tmp_path / "dev.tar", [
        _member("null", type=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        _member("sda", type=tarfile.BLKTYPE, devmajor=8, devminor=300),
        _member("p", type=tarfile.FIFOTYPE),
        _member("l", type=tarfile.SYMTYPE, linkname="/abs/target"),
    ])
    _build(tmp_path, tar)
    snap = snapshot_bootstrap(tmp_path / "boot", tmp_path / "blobs")
    assert (snap[b"null"].kind, snap[b"null"].rdev, snap[b"null"].mode) == ("chr", (1, 3), 0o666)
    assert (snap[b"sda"].kind, snap[b"sda"].rdev) == ("blk", (8, 300))
    assert snap[b"p"].kind == "fifo" and snap[b"l"].target == b"/abs/target"


@pytest.mark.parametrize("kind, cut", [("tar-rafs", 700), ("targz-rafs", 100)])
def test_truncated_or_corrupt_tar(tmp_path, kind, cut):
    src = make_random_tree(tmp_path / "src", seed=6, entries=10, chunk_size=CS)
    tar = tar_directory(src, tmp_path / "t", gzip=kind == "targz-rafs")
    bad = tmp_path / "bad"
    bad.write_bytes(tar.read_bytes()[:cut])
    with pytest.raises(BuildError, match="bad: "):
        _build(tmp_path / "out", bad, kind)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"this is not a tar archive at all" * 50)
    with pytest.raises(BuildError, match="garbage: invalid"):
        _build(tmp_path / "out2", garbage, kind)


def test_upstream_all_entry_type_tar(tmp_path):
    tar = require_upstream() / "tar" / "all-entry-type.tar"
    with tarfile.open(tar) as tf:
        members = tf.getmembers()
    _build(tmp_path, tar)
    snap = snapshot_bootstrap(tmp_path / "boot", tmp_path / "blobs")
    kinds = {tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "lnk",
             tarfile.LNKTYPE: "reg", tarfile.CHRTYPE: "chr", tarfile.BLKTYPE: "blk", tarfile.FIFOTYPE: "fifo"}
    with tarfile.open(tar) as tf:
        for m in members:
            rel = os.path.normpath(m.name).encode()
            e = snap[rel]
            assert e.kind == kinds[m.type], m.name
            if m.type not in (tarfile.LNKTYPE,):
                assert e.mode == m.mode & 0o7777 and (e.uid, e.gid) == (m.uid, m.gid), m.name
            if m.isreg():
                import hashlib

                assert e.sha256 == hashlib.sha256(tf.extractfile(m).read()).hexdigest()
            if m.issym():
                assert e.target == m.linkname.encode()
            if m.ischr() or m.isblk():
                assert e.rdev == (m.devmajor, m.devminor)
            if m.islnk():
                target = snap[os.path.normpath(m.linkname).encode()]
                assert e.link_group is not None and e.link_group == target.link_group


def test_upstream_empty_tar(tmp_path):
    tar = require_upstream() / "tar" / "empty.tar"
    assert tar.stat().st_size == 0
    r = _build(tmp_path, tar)
    assert r.blob_path is None
    with open_image(tmp_path / "boot") as image:
        assert [p for p, _ in image.walk()] == [b"/"]


def _split_gzip(raw: bytes, cuts: list[int]) -> bytes:
    """``raw`` as consecutive gzip members split at ``cuts`` (as pigz --independent, bgzip, eStargz)."""
    import gzip

    bounds = [0, *cuts, len(raw)]
    return b"".join(gzip.compress(raw[a:b], mtime=0) for a, b in itertools.pairwise(bounds))


def test_multi_member_targz_gives_every_entry(tmp_path):
    src = make_random_tree(tmp_path / "src", seed=13, entries=40, chunk_size=CS)
    tar = tar_directory(src, tmp_path / "t.tar")
    raw = tar.read_bytes()
    tgz = tmp_path / "t.tar.gz"
    tgz.write_bytes(_split_gzip(raw, [512, len(raw) // 3, len(raw) // 2 + 1]))
    _build(tmp_path / "gz", tgz, "targz-rafs")
    _build(tmp_path / "plain", tar, "tar-rafs")
    want = snapshot_bootstrap(tmp_path / "plain" / "boot", tmp_path / "plain" / "blobs")
    got = snapshot_bootstrap(tmp_path / "gz" / "boot", tmp_path / "gz" / "blobs")
    assert len(got) > 40 and diff_snapshots(want, got) == []


@pytest.mark.parametrize("where", ["crc", "isize", "middle", "second-member"])
def test_corrupt_gzip_is_refused_naming_the_file(tmp_path, where):
    import gzip

    src = make_random_tree(tmp_path / "src", seed=14, entries=10, chunk_size=CS)
    raw = tar_directory(src, tmp_path / "t.tar").read_bytes()
    data = bytearray(gzip.compress(raw, mtime=0) if where != "second-member" else _split_gzip(raw, [4096]))
    at = {"crc": -8, "isize": -4, "middle": len(data) // 2, "second-member": -7}[where]
    data[at] ^= 0x04
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(BuildError, match=r"bad.tar.gz: invalid gzip stream: member \d"):
        _build(tmp_path / "out", bad, "targz-rafs")
