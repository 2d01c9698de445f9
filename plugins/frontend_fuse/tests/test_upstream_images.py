"""Mount upstream's own RAFS v5 and v6 images with nydusd and check what a container sees."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from nydus_testsupport.fixtures import parse_tree_result, require_upstream
from nydus_testsupport.fuse import NydusdProcess, fuse_unavailable

from nydus_core.rafs.image import open_image

V5 = "rafs-v5/sha256-nocompress-repeatable"
V6 = "rafs-v6/rafs-v6-2.2.boot"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def v5_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    reason = fuse_unavailable()
    if reason:
        pytest.skip(reason)
    up = require_upstream()
    mnt = tmp_path_factory.mktemp("v5mnt")
    with NydusdProcess(mnt, ["-D", up / "rafs-v5/blobs", "-B", up / V5]):
        yield mnt


def test_v5_tree_and_every_file_digest(v5_mount: Path) -> None:
    up = require_upstream()
    entries, md5s = parse_tree_result(up / f"{V5}.result")
    seen = set()
    for e in entries:
        p = v5_mount / e.path.lstrip("/")
        st = os.lstat(p)
        kind = {"directory": stat.S_ISDIR, "file": stat.S_ISREG, "link": stat.S_ISLNK}[e.kind]
        assert kind(st.st_mode), e.path
        if e.kind == "link":
            assert os.readlink(p) == e.target
        seen.add(e.path)
    walked = set()
    for dirpath, dirnames, filenames in os.walk(v5_mount):
        for name in dirnames + filenames:
            walked.add("/" + os.path.relpath(os.path.join(dirpath, name), v5_mount))
    assert walked == seen
    assert md5s, "the .result file lists md5 sums"
    for path, digest in md5s.items():
        assert _md5(v5_mount / path.lstrip("/")) == digest, path


def test_v5_hard_links_share_one_inode(v5_mount: Path) -> None:
    group = ["hardlink-test/foo", "hardlink-test/test.sh", "normal-file-test/test.sh"]
    stats = [os.lstat(v5_mount / p) for p in group]
    assert len({s.st_ino for s in stats}) == 1
    assert all(s.st_nlink == 3 for s in stats)
    assert os.path.samefile(v5_mount / group[0], v5_mount / group[2])


def test_v5_attributes_match_the_bootstrap(v5_mount: Path) -> None:
    up = require_upstream()
    with open_image(up / V5) as img:
        for path, ino in img.walk():
            a = img.getattr(ino)
            st = os.lstat(v5_mount / os.fsdecode(path).lstrip("/")) if path != b"/" else os.lstat(v5_mount)
            assert stat.S_IFMT(st.st_mode) == stat.S_IFMT(a.mode), path
            assert stat.S_IMODE(st.st_mode) == stat.S_IMODE(a.mode), path
            assert (st.st_uid, st.st_gid) == (a.uid, a.gid), path
            assert st.st_nlink == a.nlink, path
            assert st.st_mtime_ns == a.mtime * 10**9 + a.mtime_nsec, path
            if not a.is_dir:
                assert st.st_size == a.size, path


def test_v5_is_read_only(v5_mount: Path) -> None:
    with pytest.raises(OSError) as exc:
        (v5_mount / "new-file").write_bytes(b"x")
    assert exc.value.errno == 30  # EROFS
    with pytest.raises(OSError) as exc:
        os.mkdir(v5_mount / "d")
    assert exc.value.errno == 30
    with pytest.raises(OSError) as exc:
        os.unlink(v5_mount / "hardlink-test/foo")
    assert exc.value.errno == 30
    with pytest.raises(OSError) as exc:
        os.open(v5_mount / "hardlink-test/foo", os.O_WRONLY)
    assert exc.value.errno == 30


def test_v6_zstd_blake3_image(need_fuse: None, tmp_path: Path) -> None:
    up = require_upstream()
    with NydusdProcess(tmp_path, ["-D", up / "rafs-v6/blobs", "-B", up / V6]):
        assert sorted(os.listdir(tmp_path)) == ["lib.rs", "sync_io.rs"]
        assert _md5(tmp_path / "lib.rs") == "4709cf8873e419ecedc7d43fdee4a75f"
        assert _md5(tmp_path / "sync_io.rs") == "5442bc7dc9dc5f985c7594e23866ae6f"
        assert os.lstat(tmp_path / "lib.rs").st_size == 16931
        # the root's inode is 1 whatever nid the v6 image gives it
        assert os.lstat(tmp_path).st_ino == 1
