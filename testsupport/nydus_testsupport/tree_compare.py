"""Snapshot a directory tree (or a RAFS image) into comparable records and diff two snapshots.

A snapshot maps each relative path (bytes, ``b"."`` for the root) to an :class:`Entry`: type, mode,
owner, mtime, size, content digest, symlink target, device number, storable xattrs, and a hard-link
group (the first path of the group, so link structure compares without inode numbers).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from nydus_core.rafs.image import RafsImage

__all__ = ["Entry", "diff_snapshots", "snapshot_bootstrap", "snapshot_dir", "snapshot_image"]

_STORABLE = (b"user.", b"security.", b"trusted.", b"system.posix_acl_access", b"system.posix_acl_default")


@dataclass(frozen=True)
class Entry:
    """What a tree says about one path."""

    kind: str  # reg, dir, lnk, chr, blk, fifo, sock
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    mtime_ns: int
    size: int | None  # regular files and symlinks
    sha256: str | None  # regular files
    target: bytes | None  # symlinks
    rdev: tuple[int, int] | None  # (major, minor) of devices
    xattrs: tuple[tuple[bytes, bytes], ...]
    link_group: bytes | None  # first path of the hard-link group (regular files with nlink > 1)


_KINDS = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk", stat.S_IFCHR: "chr",
          stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "sock"}


def _file_digest(path: bytes) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _dir_xattrs(path: bytes) -> tuple[tuple[bytes, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for name in names:
        raw = os.fsencode(name)
        if raw.startswith(_STORABLE):
            try:
                out.append((raw, os.getxattr(path, name, follow_symlinks=False)))
            except OSError:
                pass
    return tuple(sorted(out))


def snapshot_dir(root: str | os.PathLike[str]) -> dict[bytes, Entry]:
    """Snapshot a directory tree on disk (nothing followed)."""
    top = os.fsencode(Path(root))
    out: dict[bytes, Entry] = {}
    groups: dict[tuple[int, int], bytes] = {}
    stack = [b"."]
    while stack:
        rel = stack.pop()
        path = top if rel == b"." else os.path.join(top, rel)
        st = os.lstat(path)
        kind = _KINDS[stat.S_IFMT(st.st_mode)]
        group = None
        if kind == "reg" and st.st_nlink > 1:
            group = groups.setdefault((st.st_dev, st.st_ino), rel)
        out[rel] = Entry(
            kind=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, mtime_ns=st.st_mtime_ns,
            size=st.st_size if kind in ("reg", "lnk") else None,
            sha256=_file_digest(path) if kind == "reg" else None,
            target=os.readlink(path) if kind == "lnk" else None,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("chr", "blk") else None,
            xattrs=_dir_xattrs(path), link_group=group,
        )
        if kind == "dir":
            for name in sorted(os.listdir(path)):
                stack.append(name if rel == b"." else rel + b"/" + name)
    return _canonical_groups(out)


def snapshot_image(image: RafsImage, read_file: Callable[[int], bytes] | None = None) -> dict[bytes, Entry]:
    """Snapshot a RAFS image through the reader API; ``read_file(ino)`` returns file data (content
    digests are left out without it)."""
    out: dict[bytes, Entry] = {}
    groups: dict[int, bytes] = {}
    for path, ino in image.walk():
        rel = b"." if path == b"/" else path.lstrip(b"/")
        a = image.getattr(ino)
        kind = _KINDS[stat.S_IFMT(a.mode)]
        group = None
        if kind == "reg" and a.nlink > 1:
            group = groups.setdefault(ino, rel)
        xattrs = image.xattrs(ino) if a.has_xattr else {}
        out[rel] = Entry(
            kind=kind, mode=stat.S_IMODE(a.mode), uid=a.uid, gid=a.gid,
            mtime_ns=a.mtime * 10**9 + a.mtime_nsec,
            size=a.size if kind in ("reg", "lnk") else None,
            sha256=hashlib.sha256(read_file(ino)).hexdigest() if kind == "reg" and read_file else None,
            target=image.readlink(ino) if kind == "lnk" else None,
            rdev=(os.major(a.rdev), os.minor(a.rdev)) if kind in ("chr", "blk") else None,
            xattrs=tuple(sorted(xattrs.items())), link_group=group,
        )
    return _canonical_groups(out)


def _canonical_groups(snap: dict[bytes, Entry]) -> dict[bytes, Entry]:
    """Name each hard-link group by its smallest path, whatever order the walk found them in."""
    members: dict[bytes, list[bytes]] = {}
    for path, e in snap.items():
        if e.link_group is not None:
            members.setdefault(e.link_group, []).append(path)
    rename = {g: min(paths) for g, paths in members.items()}
    for g, paths in members.items():
        if len(paths) == 1:  # nlink > 1 but only one name inside this tree
            rename[g] = b""
    return {
        p: replace(e, link_group=rename[e.link_group] or None) if e.link_group is not None else e
        for p, e in snap.items()
    }


def diff_snapshots(
    expected: dict[bytes, Entry], actual: dict[bytes, Entry], *, ignore: Iterable[str] = (),
    ignore_paths: Iterable[bytes] = (), skip: Callable[[bytes, Entry], bool] | None = None,
) -> list[str]:
    """Return human-readable differences (empty when equal). ``ignore`` names :class:`Entry` fields
    to leave out (e.g. ``"mtime_ns"``, ``"xattrs"``); ``ignore_paths`` and ``skip`` drop entries."""
    ignored = set(ignore)
    names = [f.name for f in fields(Entry) if f.name not in ignored]
    dropped = set(ignore_paths)

    def keep(snap: dict[bytes, Entry]) -> dict[bytes, Entry]:
        return {p: e for p, e in snap.items() if p not in dropped and not (skip and skip(p, e))}

    exp, act = keep(expected), keep(actual)
    out = [f"missing: {p!r}" for p in sorted(exp.keys() - act.keys())]
    out += [f"unexpected: {p!r}" for p in sorted(act.keys() - exp.keys())]
    for p in sorted(exp.keys() & act.keys()):
        for n in names:
            a, b = getattr(exp[p], n), getattr(act[p], n)
            if a != b:
                out.append(f"{p!r}: {n} {a!r} != {b!r}")
    return out


def snapshot_bootstrap(bootstrap: str | os.PathLike[str], blob_dir: str | os.PathLike[str] | None = None
                       ) -> dict[bytes, Entry]:
    """Snapshot a bootstrap with our reader; with ``blob_dir`` file contents are read (and every
    chunk verified) from the blobs in it."""
    from nydus_core.rafs.image import open_image
    from nydus_core.tools.chunkreader import BlobDirReader

    with open_image(bootstrap) as image:
        if blob_dir is None:
            return snapshot_image(image)
        with BlobDirReader(blob_dir) as reader:
            return snapshot_image(image, lambda ino: reader.read_file(image, ino))
