"""Snapshot a tar (as ``nydus-image unpack`` writes it) into :class:`~.tree_compare.Entry` records."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import Any

from .tree_compare import Entry, _canonical_groups

__all__ = ["snapshot_tar"]


def _mtime_ns(info: tarfile.TarInfo) -> int:
    text = info.pax_headers.get("mtime")
    if text and "." in text:
        sec, frac = text.split(".", 1)
        return int(sec) * 10**9 + int((frac + "000000000")[:9])
    return int(info.mtime) * 10**9


def snapshot_tar(path: str | os.PathLike[str]) -> dict[bytes, Entry]:
    """Snapshot every member of a PAX tar: the same records :func:`snapshot_dir` makes of a tree."""
    out: dict[bytes, Entry] = {}
    with tarfile.open(Path(path), "r:", encoding="utf-8", errors="surrogateescape") as tf:
        for info in tf:
            rel = os.fsencode(info.name.rstrip("/")) or b"."
            if rel.startswith(b"./") and rel != b".":
                rel = rel[2:]
            xattrs = tuple(sorted(
                (os.fsencode(k[len("SCHILY.xattr."):]), v.encode("utf-8", "surrogateescape"))
                for k, v in info.pax_headers.items() if k.startswith("SCHILY.xattr.")
            ))
            common: dict[str, Any] = {"mode": info.mode & 0o7777, "uid": info.uid, "gid": info.gid,
                      "mtime_ns": _mtime_ns(info), "xattrs": xattrs}
            if info.islnk():
                first = out[os.fsencode(info.linkname)]
                group = first.link_group or os.fsencode(info.linkname)
                out[os.fsencode(info.linkname)] = Entry(**{**first.__dict__, "link_group": group})
                out[rel] = Entry(**{**first.__dict__, "link_group": group})
                continue
            if info.isreg():
                f = tf.extractfile(info)
                assert f is not None
                digest = hashlib.sha256(f.read()).hexdigest()
                out[rel] = Entry(kind="reg", size=info.size, sha256=digest, target=None, rdev=None,
                                 link_group=None, **common)
            elif info.isdir():
                out[rel] = Entry(kind="dir", size=None, sha256=None, target=None, rdev=None,
                                 link_group=None, **common)
            elif info.issym():
                target = os.fsencode(info.linkname)
                out[rel] = Entry(kind="lnk", size=len(target), sha256=None, target=target, rdev=None,
                                 link_group=None, **common)
            elif info.ischr() or info.isblk():
                out[rel] = Entry(kind="chr" if info.ischr() else "blk", size=None, sha256=None,
                                 target=None, rdev=(info.devmajor, info.devminor), link_group=None,
                                 **common)
            elif info.isfifo():
                out[rel] = Entry(kind="fifo", size=None, sha256=None, target=None, rdev=None,
                                 link_group=None, **common)
    return _canonical_groups(out)
