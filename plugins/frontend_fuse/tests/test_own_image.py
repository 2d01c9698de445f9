"""Mount an image built by our builder from a real tree and compare everything a container sees."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from nydus_frontend_fuse.metrics import Fop
from nydus_testsupport.fuse import NydusdProcess, fuse_unavailable, snapshot_tree, tar_bytes
from nydus_testsupport.trees import make_sample_tree

from nydus_core.builder import BuildOptions, build

BIG_DIR = 10_500


@dataclass
class Served:
    src: Path
    mnt: Path
    daemon: NydusdProcess
    boot: Path
    blobs: Path


def _permission_tree(root: Path) -> None:
    """Files and directories whose modes decide what uid 1000 may do."""
    p = root / "perm"
    p.mkdir()
    (p / "public.txt").write_bytes(b"everyone may read\n")
    os.chmod(p / "public.txt", 0o644)
    (p / "secret.txt").write_bytes(b"root only\n")
    os.chmod(p / "secret.txt", 0o600)
    (p / "group.txt").write_bytes(b"group 1000 only\n")
    os.chown(p / "group.txt", 0, 1000)
    os.chmod(p / "group.txt", 0o640)
    (p / "mine.txt").write_bytes(b"owned by 1000\n")
    os.chown(p / "mine.txt", 1000, 1000)
    os.chmod(p / "mine.txt", 0o600)
    (p / "tool.sh").write_bytes(b"#!/bin/sh\necho tool-ran\n")
    os.chmod(p / "tool.sh", 0o755)
    (p / "closed").mkdir()
    (p / "closed" / "inside.txt").write_bytes(b"behind a 0700 directory\n")
    os.chmod(p / "closed" / "inside.txt", 0o644)
    os.chmod(p / "closed", 0o700)
    os.chmod(p, 0o755)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    reason = fuse_unavailable()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("own")
    tree = make_sample_tree(work / "src", chunk_size=0x1000, big_dir=BIG_DIR)
    assert not tree.skipped, tree.skipped  # root makes every kind
    _permission_tree(tree.root)
    os.chmod(tree.root, 0o755)
    boot, blobs = work / "image.boot", work / "blobs"
    build(tree.root, "dir-rafs", bootstrap=boot, blob_dir=blobs,
          options=BuildOptions(chunk_size=0x1000, compressor="zstd", digester="blake3"))
    cfg = work / "nydusd.json"
    cfg.write_text(json.dumps({
        "device": {"backend": {"type": "localfs", "config": {"dir": str(blobs)}},
                   "cache": {"type": "blobcache", "config": {"work_dir": str(work / "cache")}}},
        "mode": "direct", "digest_validate": True, "enable_xattr": True, "access_pattern": True,
        "iostats_files": True,
    }))
    # outside pytest's 0700 temp dirs, so that uid 1000 can reach it
    mnt = Path(tempfile.mkdtemp(prefix="nydus-test-mnt-"))
    os.chmod(mnt, 0o755)
    try:
        with NydusdProcess(mnt, ["-C", cfg, "-B", boot], apisock=work / "api.sock") as d:
            yield Served(tree.root, mnt, d, boot, blobs)
    finally:
        os.rmdir(mnt)


def test_every_entry_looks_the_same(served: Served) -> None:
    src = snapshot_tree(served.src)
    mnt = snapshot_tree(served.mnt)
    assert src.keys() == mnt.keys()
    diffs = {k: (src[k], mnt[k]) for k in src if src[k] != mnt[k]}
    assert not diffs, list(diffs.items())[:5]
    kinds = {stat.S_IFMT(e["mode"]) for e in mnt.values()}
    assert kinds == {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFSOCK,
                     stat.S_IFCHR, stat.S_IFBLK}


def test_tar_of_the_mount_equals_tar_of_the_source(served: Served) -> None:
    # GNU tar keeps type, mode, owner, mtime (seconds), link targets, hard links and data; it skips
    # sockets, which RAFS keeps (the lstat comparison covers them)
    a, b = tar_bytes(served.src), tar_bytes(served.mnt)
    assert len(a) > 1 << 20
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()


def test_hard_links_share_an_inode(served: Served) -> None:
    names = ["tiny.txt", "tiny-link", "text/tiny-link-2"]
    st = [os.lstat(served.mnt / n) for n in names]
    assert len({s.st_ino for s in st}) == 1 and all(s.st_nlink == 3 for s in st)
    a, b = os.lstat(served.mnt / "three-chunks.bin"), os.lstat(served.mnt / "deep/three-link")
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    assert os.lstat(served.mnt / "one-chunk.bin").st_ino != a.st_ino


def test_special_files_show_as_such(served: Served) -> None:
    m = served.mnt
    assert stat.S_ISFIFO(os.lstat(m / "fifo").st_mode)
    assert stat.S_ISSOCK(os.lstat(m / "socket").st_mode)
    null = os.lstat(m / "null-char")
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    big = os.lstat(m / "big-minor-char")
    assert (os.major(big.st_rdev), os.minor(big.st_rdev)) == (200, 300)
    assert stat.S_ISBLK(os.lstat(m / "loop-blk").st_mode)
    assert os.readlink(m / "link-long") == "x" * 1000
    assert os.readlink(m / "link-abs") == "/etc/passwd"
    assert os.readlink(m / "text/link-up") == "../tiny.txt"
    assert (m / "text/link-up").read_bytes() == b"hello\n"


def test_xattrs(served: Served) -> None:
    m = served.mnt
    assert sorted(os.listxattr(m / "tiny.txt")) == ["user.binary", "user.comment"]
    assert os.getxattr(m / "tiny.txt", "user.binary") == bytes(range(256))
    assert os.getxattr(m / "text", "user.dir") == b"on a directory"
    assert os.getxattr(m / "three-chunks.bin", "user.empty") == b""
    assert os.getxattr(m / "private/secret", "trusted.overlay.something") == b"y"
    with pytest.raises(OSError) as exc:
        os.getxattr(m / "one-chunk.bin", "user.missing")
    assert exc.value.errno == 61  # ENODATA
    with pytest.raises(OSError) as exc:
        os.setxattr(m / "tiny.txt", "user.new", b"v")
    assert exc.value.errno == 30  # EROFS


def test_find_over_ten_thousand_entries(served: Served) -> None:
    out = subprocess.run(["find", str(served.mnt)], capture_output=True, check=True).stdout
    mine = sorted(os.path.relpath(os.fsdecode(p), served.mnt) for p in out.splitlines())
    out = subprocess.run(["find", str(served.src)], capture_output=True, check=True).stdout
    theirs = sorted(os.path.relpath(os.fsdecode(p), served.src) for p in out.splitlines())
    assert len(mine) > 10_000
    assert mine == theirs
    assert len(os.listdir(served.mnt / "big")) == BIG_DIR


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if stat.S_ISREG(os.lstat(p).st_mode):
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_concurrent_readers(served: Served) -> None:
    expected = _digests(served.src)
    names = [n for n in expected if not n.startswith("big/")] + [f"big/{n}" for n in
                                                                 sorted(os.listdir(served.src / "big"))[:300]]
    errors: list[str] = []
    lock = threading.Lock()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        order = names[:]
        rng.shuffle(order)
        for n in order:
            with open(served.mnt / n, "rb") as fh:
                data = b""
                while chunk := fh.read(rng.choice([1, 100, 4096, 65536])):
                    data += chunk
            if hashlib.sha256(data).hexdigest() != expected[n]:
                with lock:
                    errors.append(n)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(reader, range(8)))
    assert not errors
    # and from other processes at the same time
    script = ("import hashlib, json, os, sys; print(json.dumps([hashlib.sha256(open(p, 'rb').read())"
              ".hexdigest() for p in sys.argv[1:]]))")
    subset = names[:200]
    procs = [subprocess.Popen([sys.executable, "-c", script, *[str(served.mnt / n) for n in subset]],
                              stdout=subprocess.PIPE) for _ in range(4)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert json.loads(out) == [expected[n] for n in subset]


def _as_user(*argv: str, gid: int = 1000, groups: str = "1000") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid", "1000", "--regid", str(gid), "--groups", groups, *argv],
                          capture_output=True, text=True, timeout=60)


def test_a_non_root_user_gets_what_the_modes_allow(served: Served) -> None:
    p = served.mnt / "perm"
    ok = _as_user("cat", str(p / "public.txt"))
    assert ok.returncode == 0 and ok.stdout == "everyone may read\n"
    assert _as_user("cat", str(p / "mine.txt")).stdout == "owned by 1000\n"
    assert _as_user("cat", str(p / "group.txt")).stdout == "group 1000 only\n"
    ran = _as_user(str(p / "tool.sh"))
    assert ran.returncode == 0 and ran.stdout == "tool-ran\n"
    for denied, kw in ((p / "secret.txt", {}), (p / "closed" / "inside.txt", {}),
                       (p / "group.txt", {"gid": 2000, "groups": "2000"})):
        res = _as_user("cat", str(denied), **kw)
        assert res.returncode != 0 and "Permission denied" in res.stderr, (denied, res)
    res = _as_user("ls", str(p / "closed"))
    assert res.returncode != 0 and "Permission denied" in res.stderr
    res = _as_user("sh", "-c", f"echo x > {p / 'mine.txt'}")
    assert res.returncode != 0 and "Read-only file system" in res.stderr
    # root still reads everything
    assert (p / "secret.txt").read_bytes() == b"root only\n"


def test_metrics_and_access_pattern(served: Served, tmp_path: Path) -> None:
    # a daemon of its own, with an empty cache, so that reads reach the daemon and the backend
    cfg = tmp_path / "nydusd.json"
    cfg.write_text(json.dumps({
        "device": {"backend": {"type": "localfs", "config": {"dir": str(served.blobs)}},
                   "cache": {"type": "blobcache", "config": {"work_dir": str(tmp_path / "cache")}}},
        "access_pattern": True, "iostats_files": True, "latest_read_files": True, "enable_xattr": True}))
    (tmp_path / "mnt").mkdir()
    with NydusdProcess(tmp_path / "mnt", ["-C", cfg, "-B", served.boot], apisock=tmp_path / "a.sock") as d:
        api, m = d.api, tmp_path / "mnt"
        before = api.call("GET", "/api/v1/metrics")
        words = (m / "text" / "words.txt").read_bytes()
        over = (m / "over-one.bin").read_bytes()
        assert words == (served.src / "text" / "words.txt").read_bytes()
        after = api.call("GET", "/api/v1/metrics")
        assert after["data_read"] - before["data_read"] == len(words) + len(over)
        assert after["id"] == "/"
        assert sum(after["fop_hits"]) > sum(before["fop_hits"])
        with pytest.raises(OSError) as missing:  # a failed request is counted under its operation
            os.getxattr(m / "text" / "words.txt", "user.nydus-test-missing")
        assert missing.value.errno == errno.ENODATA
        errors = api.call("GET", "/api/v1/metrics")["fop_errors"]
        assert errors[Fop.GETXATTR] == after["fop_errors"][Fop.GETXATTR] + 1
        pattern = api.call("GET", "/api/v1/metrics/pattern")
        assert [p["path"] for p in pattern] == ["/text/words.txt", "/over-one.bin"]
        assert all(p["nr_read"] >= 1 and p["first_access_time_secs"] > 0 for p in pattern)
        backend = api.call("GET", "/api/v1/metrics/backend")
        assert backend["backend_type"] == "localfs" and backend["read_count"] > 0
        assert backend["read_amount_total"] > 0
        cache = api.call("GET", "/api/v1/metrics/blobcache")
        assert cache["store_path"] and cache["entries_count"] > 0
        files = api.call("GET", "/api/v1/metrics/files")
        ino = str(os.lstat(m / "over-one.bin").st_ino)
        assert files[ino]["data_read"] == len(over)
        latest = api.call("GET", "/api/v1/metrics/files", {"latest": "true"})
        assert latest and all(isinstance(r, list) and len(r) == 2 for r in latest)
        assert api.call("GET", "/api/v1/metrics/files", {"latest": "true"}) == []  # cleared
        info = api.call("GET", "/api/v1/daemon")
        assert info["state"] == "RUNNING" and info["backend_collection"]["/"]["source"] == str(served.boot)
