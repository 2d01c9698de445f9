"""The builder refuses what RAFS v6 cannot hold (one line naming layer, entry and limit), checks
what it wrote before naming it built, and what it accepts at the limits mounts and lists."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from nydus_testsupport.blob_images import make_blob_images
from nydus_testsupport.erofs import erofs_mount, fsck_extract, fsck_unavailable, kernel_mount_unavailable

from nydus_core.errors import BuildError, FormatError
from nydus_core.rafs.model import TreeInode
from nydus_core.rafs.reader import open_bootstrap_bytes
from nydus_core.rafs.v6_writer import V6Writer
from nydus_core.tools.check import self_check

BIN = Path(sys.executable).parent


def _reg(name: str, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def _tar(path: Path, infos: list[tarfile.TarInfo], fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as tf:
        for info in infos:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return path


def _dev(major: int, minor: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo("dev/thing")
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, major, minor
    return info


def _big_xattr() -> tarfile.TarInfo:
    info = _reg("x")
    info.pax_headers = {"SCHILY.xattr.user.big": "v" * 70_000}
    return info


def _create(tmp: Path, tar: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NYDUS_DEBUG"}
    return subprocess.run([str(BIN / "nydus-image"), "create", "-t", "tar-rafs", "-B", str(tmp / "out.boot"),
                           "-D", str(tmp / "blobs"), str(tar)], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("case, infos, needles", [
    ("name300", [_reg("a" * 300)], ["entry /aaaa", "name of 300 bytes", "limit of 255"]),
    ("name4096", [_reg("d/" + "a" * 4096)], ["entry /d/aaaa", "name of 4096 bytes"]),
    ("both", [_reg("a" * 4096), _reg("b" * 300)], ["name of", "limit of 255"]),
    ("major", [_dev(2_097_151, 1)], ["entry /dev/thing", "device number 2097151:1", "major <= 4095"]),
    ("minor", [_dev(1, 1 << 20)], ["device number 1:1048576", "minor <= 1048575"]),
    ("mtime-negative", [_reg("old", mtime=-5)], ["entry /old", "mtime -5", "0..18446744073709551615"]),
    ("xattr-value", [_big_xattr()], ["entry /x", "70000 bytes", "65535"]),
])
def test_what_the_format_cannot_hold_is_refused(tmp_path: Path, case: str, infos: list[tarfile.TarInfo],
                                                needles: list[str]) -> None:
    tar = _tar(tmp_path / f"{case}.tar", infos, tarfile.GNU_FORMAT if case.startswith("name") else
               tarfile.PAX_FORMAT)
    proc = _create(tmp_path, tar)
    assert proc.returncode not in (0, 70), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: {tar}: entry /"), lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    assert not (tmp_path / "out.boot").exists()
    assert not (tmp_path / "blobs").exists() or os.listdir(tmp_path / "blobs") == []


def test_a_directory_entry_out_of_range_is_refused_by_the_walk(tmp_path: Path) -> None:
    """A directory source is checked during its walk (no second pass): the same one line, naming
    the source and the entry's image path, and nothing written."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "fine").write_bytes(b"y")
    old = src / "sub" / "old"
    old.write_bytes(b"x")
    os.utime(old, ns=(0, -5_000_000_000))
    if old.stat().st_mtime_ns != -5_000_000_000:
        pytest.skip("this filesystem cannot store an mtime before 1970")
    env = {k: v for k, v in os.environ.items() if k != "NYDUS_DEBUG"}
    proc = subprocess.run([str(BIN / "nydus-image"), "create", "-B", str(tmp_path / "out.boot"),
                           "-D", str(tmp_path / "blobs"), str(src)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode not in (0, 70), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: {src}: entry /sub/old: mtime -5 outside"), lines[0]
    assert not (tmp_path / "out.boot").exists()


def test_the_limits_themselves_build_list_and_mount(tmp_path: Path) -> None:
    tar = _tar(tmp_path / "edge.tar", [
        _reg("n" * 255), _reg("future", mtime=2**40), _dev(4095, (1 << 20) - 1),
    ])
    proc = _create(tmp_path, tar)
    assert proc.returncode == 0, proc.stderr
    boot = tmp_path / "out.boot"
    assert subprocess.run([str(BIN / "nydus-image"), "check", "-B", str(boot)], capture_output=True,
                          timeout=60).returncode == 0
    ls = subprocess.run([str(BIN / "nydus"), "ls", "-l", str(boot), "/"], capture_output=True, text=True,
                        timeout=60)
    assert ls.returncode == 0, ls.stderr
    assert "36812-02-20 00:36 future" in ls.stdout  # mtime 2**40: printed, not an internal error
    names = {line.rsplit(" ", 1)[-1] for line in ls.stdout.splitlines()}
    assert {"n" * 255, "future", "dev"} <= names
    devices = make_blob_images(boot, tmp_path / "blobs", tmp_path / "images")
    if not fsck_unavailable():
        fsck_extract(boot, devices, tmp_path / "fsck-out")  # raises on "bogus dirent namelen" and the like
        assert (tmp_path / "fsck-out" / ("n" * 255)).read_bytes() == b"x"
    if not kernel_mount_unavailable():
        with erofs_mount(boot, devices, tmp_path / "mnt") as mnt:
            assert (mnt / ("n" * 255)).read_bytes() == b"x"
            assert os.stat(mnt / "future").st_mtime == 2**40
            st = os.stat(mnt / "dev" / "thing", follow_symlinks=False)
            assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (4095, (1 << 20) - 1)


def test_reader_and_self_check_refuse_a_long_dirent_name() -> None:
    """A bootstrap holding a 300-byte name (as the kernel's "bogus dirent namelen") fails our reader,
    so the builder's self-check would refuse it before naming it built."""
    root = TreeInode(mode=0o40755, children={b"a" * 300: TreeInode(mode=0o100644)})
    data = V6Writer(root, [], chunk_size=0x1000, compressor=0, digester=1).dump()
    image = open_bootstrap_bytes(data, "raw.boot")
    with pytest.raises(FormatError, match="name of 300 bytes"):
        list(image.walk())
    image.close()
    with pytest.raises(BuildError, match=r"raw.boot: the bootstrap just built fails its own check:.*300"):
        self_check(data, "raw.boot")


def test_unpack_keeps_an_xattr_name_that_is_not_utf8(tmp_path: Path) -> None:
    """Found by bench/robustness.py: unpack wrote such a name as a PAX keyword (UTF-8 only) and
    failed with an internal error; it is written in libarchive's escaped form, which create reads."""
    from nydus_core.builder import build
    from nydus_core.rafs.image import open_image
    from nydus_core.tools.unpack import unpack_to_tar

    (tmp_path / "src").mkdir()
    f = tmp_path / "src" / "f"
    f.write_bytes(b"data")
    try:
        os.setxattr(f, b"user.\xffname", b"\x00\xfevalue")
    except OSError as exc:
        pytest.skip(f"this filesystem has no user xattrs: {exc}")
    build(tmp_path / "src", "dir-rafs", bootstrap=tmp_path / "a.boot", blob_dir=tmp_path / "blobs")
    from nydus_core.tools.datasource import open_chunk_source

    out = io.BytesIO()
    with open_image(tmp_path / "a.boot") as image:
        unpack_to_tar(image, open_chunk_source(blob_dir=str(tmp_path / "blobs")), out)
    (tmp_path / "u.tar").write_bytes(out.getvalue())
    build(tmp_path / "u.tar", "tar-rafs", bootstrap=tmp_path / "b.boot", blob_dir=tmp_path / "blobs2")
    with open_image(tmp_path / "b.boot") as image:
        assert image.xattrs(image.resolve("/f")) == {b"user.\xffname": b"\x00\xfevalue"}
