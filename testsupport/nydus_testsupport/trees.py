"""Make source trees for build tests: a directory with every inode kind, its tar twin, random trees.

Everything is deterministic (seeded). Device nodes, ownership and ``trusted.*`` xattrs need root;
the makers skip what the current user cannot create and say so in :attr:`SampleTree.skipped`.
"""

from __future__ import annotations

import io
import os
import random
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nydus_testkit.samples import payload, random_bytes

__all__ = ["SampleTree", "make_random_tree", "make_sample_tree", "tar_directory"]

MTIME = 1_600_000_000


@dataclass
class SampleTree:
    """A made tree: its root and what could not be made for lack of privileges."""

    root: Path
    skipped: list[str] = field(default_factory=list)


def _deepest_first(root: Path) -> list[Path]:
    """Every path below ``root`` (deepest first, so setting a child's time keeps its parent's), then root."""
    return [*sorted(root.rglob("*"), key=lambda p: (-len(p.parts), str(p))), root]


def _set_xattr(path: Path, name: str, value: bytes, skipped: list[str]) -> None:
    try:
        os.setxattr(path, name, value, follow_symlinks=False)
    except OSError:
        skipped.append(f"xattr {name} on {path.name}")


def make_sample_tree(
    root: str | os.PathLike[str], *, chunk_size: int = 0x1000, big_dir: int = 0
) -> SampleTree:
    """Create a tree with every inode kind below ``root`` (which must not exist yet).

    Regular files: empty, tiny, exactly one and several chunks (``chunk_size``), one byte over, a
    duplicate (for dedup), compressible and incompressible data; hard links (3 names, one in
    another directory); symlinks (relative, absolute, dangling, long); a fifo, a socket, char and
    block devices; xattrs (``user.``, ``trusted.``, binary values); non-ASCII and odd names; setuid
    and sticky modes; varied owners and mtimes (with nanoseconds); ``big_dir`` files in one directory.
    """
    r = Path(root)
    r.mkdir(parents=True)
    skipped: list[str] = []
    cs = chunk_size
    files = {
        "empty": b"",
        "tiny.txt": b"hello\n",
        "one-chunk.bin": random_bytes(cs, 1),
        "three-chunks.bin": random_bytes(3 * cs, 2),
        "over-one.bin": random_bytes(cs + 1, 3),
        "text/words.txt": payload(5 * cs + 123, 4),
        "text/dup-of-words.txt": payload(5 * cs + 123, 4),
        "deep/a/b/c/d/e/leaf": b"leaf\n",
        "non-ascii/h\u00e9llo w\u00f6rld \u2603.txt": "unicode \u2603\n".encode(),
        "non-ascii/\u65e5\u672c\u8a9e": b"nihongo\n",
        "odd/-dash": b"dash",
        "odd/!bang": b"bang",
        "odd/.hidden": b"hidden",
        "odd/with space": b"space",
        "odd/" + "n" * 200: b"long name",
    }
    for rel, data in files.items():
        p = r / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    bad = r / "odd" / os.fsdecode(b"latin1-\xe9")
    bad.write_bytes(b"not utf-8 name")
    # hard links
    os.link(r / "tiny.txt", r / "tiny-link")
    os.link(r / "tiny.txt", r / "text" / "tiny-link-2")
    os.link(r / "three-chunks.bin", r / "deep" / "three-link")
    # symlinks
    os.symlink("tiny.txt", r / "link-rel")
    os.symlink("/etc/passwd", r / "link-abs")
    os.symlink("does/not/exist", r / "link-dangling")
    os.symlink("x" * 1000, r / "link-long")
    os.symlink("../tiny.txt", r / "text" / "link-up")
    # special files
    os.mkfifo(r / "fifo")
    try:
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(os.fspath(r / "socket"))
        s.close()
    except OSError:
        skipped.append("socket")
    for name, kind, dev in (("null-char", stat.S_IFCHR, os.makedev(1, 3)),
                            ("big-minor-char", stat.S_IFCHR, os.makedev(200, 300)),
                            ("loop-blk", stat.S_IFBLK, os.makedev(7, 0))):
        try:
            os.mknod(r / name, kind | 0o640, dev)
        except OSError:
            skipped.append(name)
    # modes
    (r / "setuid").write_bytes(b"#!/bin/sh\n")
    os.chmod(r / "setuid", 0o4755)
    (r / "sticky").mkdir()
    os.chmod(r / "sticky", 0o1777)
    (r / "private").mkdir()
    (r / "private" / "secret").write_bytes(b"secret")
    os.chmod(r / "private" / "secret", 0o600)
    # xattrs
    _set_xattr(r / "tiny.txt", "user.comment", b"a tiny file", skipped)
    _set_xattr(r / "tiny.txt", "user.binary", bytes(range(256)), skipped)
    _set_xattr(r / "text", "user.dir", b"on a directory", skipped)
    _set_xattr(r / "private" / "secret", "trusted.overlay.something", b"y", skipped)
    _set_xattr(r / "three-chunks.bin", "user.empty", b"", skipped)
    if big_dir:
        d = r / "big"
        d.mkdir()
        for i in range(big_dir):
            (d / f"entry-{i:05d}-{'x' * (i % 37)}").write_bytes(b"%d\n" % i if i % 10 == 0 else b"")
    # owners and times (deepest first so directory mtimes stick)
    rng = random.Random(5)
    for p in _deepest_first(r):
        if os.geteuid() == 0:
            uid = rng.choice([0, 1, 1000, 65534, 70000])
            try:
                os.chown(p, uid, rng.choice([0, 100, 65535, 80000]), follow_symlinks=False)
            except OSError:
                skipped.append(f"chown {p.name}")
        ns = (MTIME + rng.randrange(10**6)) * 10**9 + rng.randrange(10**9)
        os.utime(p, ns=(ns, ns), follow_symlinks=False)
    return SampleTree(r, skipped)


def make_random_tree(
    root: str | os.PathLike[str], seed: int, *, entries: int = 60, max_size: int = 40_000,
    chunk_size: int = 0x1000,
) -> Path:
    """Create a random tree of files, directories, symlinks and hard links (as any user)."""
    rng = random.Random(seed)
    r = Path(root)
    r.mkdir(parents=True)
    dirs = [r]
    files: list[Path] = []
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.\u00e9\u00fc\u4e2d"
    for i in range(entries):
        parent = rng.choice(dirs)
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) + f"-{i}"
        p = parent / name
        kind = rng.random()
        if kind < 0.2:
            p.mkdir()
            dirs.append(p)
        elif kind < 0.8:
            size = rng.choice([0, 1, chunk_size, 2 * chunk_size, rng.randrange(max_size)])
            p.write_bytes(random_bytes(size, seed * 1000 + i) if rng.random() < 0.5 else payload(size, i))
            os.chmod(p, rng.choice([0o644, 0o600, 0o755, 0o444]))
            files.append(p)
        elif kind < 0.9 or not files:
            os.symlink(rng.choice(["target", "../up", "/abs/path", "x" * rng.randint(1, 300)]), p)
        else:
            os.link(rng.choice(files), p)
    for p in _deepest_first(r):
        t = (MTIME + rng.randrange(10**6)) * 10**9
        os.utime(p, ns=(t, t), follow_symlinks=False)
    return r


def tar_directory(
    src: str | os.PathLike[str], out: str | os.PathLike[str], *, gzip: bool = False,
    extra: Iterable[tuple[tarfile.TarInfo, bytes | None]] = (),
) -> Path:
    """Write ``src`` as a PAX tar (xattrs as ``SCHILY.xattr.*``, hard links as links, nanosecond
    mtimes), then append ``extra`` members; return the tar path."""
    src_path = Path(src)
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(out, "w:gz" if gzip else "w", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tf:
        top = os.fsencode(src_path)
        walk = [(top, b".")]
        while walk:
            path, arc = walk.pop()
            st = os.lstat(path)
            info = tarfile.TarInfo(os.fsdecode(arc))
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.mtime = st.st_mtime_ns // 10**9
            pax = {"mtime": f"{st.st_mtime_ns // 10**9}.{st.st_mtime_ns % 10**9:09d}"}
            try:
                for name in os.listxattr(path, follow_symlinks=False):
                    value = os.getxattr(path, name, follow_symlinks=False)
                    pax["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
            except OSError:
                pass
            info.pax_headers = pax
            data: bytes | None = None
            key = (st.st_dev, st.st_ino)
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and key in links:
                info.type = tarfile.LNKTYPE
                info.linkname = links[key]
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                for child in sorted(os.listdir(path), reverse=True):
                    walk.append((os.path.join(path, child), arc + b"/" + child))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    data = f.read()
                info.size = len(data)
                if st.st_nlink > 1:
                    links[key] = os.fsdecode(arc)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.fsdecode(os.readlink(path))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            else:
                continue  # sockets cannot be archived
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
        for info, data in extra:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return Path(out)
