"""``nydus-image inspect``: answer questions about an image as JSON-ready dicts."""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Callable
from typing import Any

from ..errors import UsageError
from ..rafs.image import RafsImage
from ..rafs.model import ChunkInfo, InodeAttrs
from .datasource import algorithm_names


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def attrs_dict(path: bytes, a: InodeAttrs) -> dict[str, Any]:
    """The attributes of one inode as JSON."""
    return {"path": _text(path), "ino": a.ino, "mode": f"{a.mode:o}", "uid": a.uid, "gid": a.gid,
            "size": a.size, "nlink": a.nlink, "mtime": a.mtime, "mtime_nsec": a.mtime_nsec,
            "rdev": a.rdev}


def chunk_dict(c: ChunkInfo) -> dict[str, Any]:
    """One chunk record as JSON."""
    return {"block_id": c.block_id.hex(), "blob_index": c.blob_index, "flags": c.flags,
            "compressed_offset": c.compressed_offset, "compressed_size": c.compressed_size,
            "uncompressed_offset": c.uncompressed_offset, "uncompressed_size": c.uncompressed_size,
            "file_offset": c.file_offset, "index": c.index}


def superblock(image: RafsImage) -> dict[str, Any]:
    """The superblock facts: version, flags, algorithms, chunk size, counts."""
    comp, dig = algorithm_names(image)
    return {"fs_version": image.version, "flags": f"{image.flags:#x}", "compressor": comp,
            "digester": dig, "chunk_size": image.chunk_size, "inodes": image.inode_count(),
            "explicit_uid_gid": image.explicit_uid_gid, "blobs": len(image.blobs)}


def blobs(image: RafsImage) -> list[dict[str, Any]]:
    """The blob table."""
    return [{"blob_index": b.blob_index, "blob_id": b.blob_id, "chunk_count": b.chunk_count,
             "compressed_size": b.compressed_size, "uncompressed_size": b.uncompressed_size,
             "features": f"{b.features:#x}", "compressor": b.compressor, "digester": b.digester}
            for b in image.blobs]


def files(image: RafsImage) -> list[dict[str, Any]]:
    """Every entry of the tree with its attributes."""
    return [attrs_dict(p, image.getattr(ino)) for p, ino in image.walk()]


def prefetch(image: RafsImage) -> list[dict[str, Any]]:
    """The prefetch table, with the paths of its inodes."""
    wanted = image.prefetch_inodes()
    paths: dict[int, str] = {}
    if wanted:
        want = set(wanted)
        for p, ino in image.walk():
            if ino in want and ino not in paths:
                paths[ino] = _text(p)
    return [{"ino": ino, "path": paths.get(ino)} for ino in wanted]


def file_info(image: RafsImage, path: str) -> dict[str, Any]:
    """One entry: attributes, xattrs, link target and chunk records."""
    try:
        ino = image.resolve(path)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"{image.path}: no such path in the image: {path}") from None
    a = image.getattr(ino)
    out = attrs_dict(os.fsencode(path), a)
    if a.has_xattr:
        out["xattrs"] = {_text(k): _text(v) for k, v in image.xattrs(ino).items()}
    if stat.S_ISLNK(a.mode):
        out["target"] = _text(image.readlink(ino))
    if a.is_reg:
        out["chunks"] = [chunk_dict(c) for c in image.chunks(ino)]
    if a.is_dir:
        out["entries"] = [_text(n) for n, _ in image.readdir(ino)]
    return out


def stats(image: RafsImage) -> dict[str, Any]:
    """Counts of inodes by kind, bytes, and chunk dedup within the image."""
    counts = {"dirs": 0, "files": 0, "symlinks": 0, "others": 0, "hardlinks": 0}
    size = 0
    chunks = 0
    distinct: set[tuple[int, int]] = set()
    seen: set[int] = set()
    for _p, ino in image.walk():
        a = image.getattr(ino)
        if a.is_dir:
            counts["dirs"] += 1
        elif a.is_reg:
            if ino in seen:
                counts["hardlinks"] += 1
                continue
            seen.add(ino)
            counts["files"] += 1
            size += a.size
            for c in image.chunks(ino):
                chunks += 1
                distinct.add((c.blob_index, c.compressed_offset))
        elif a.is_symlink:
            counts["symlinks"] += 1
        else:
            counts["others"] += 1
    return {**superblock(image), **counts, "file_bytes": size, "chunks": chunks,
            "distinct_chunks": len(distinct)}


REQUESTS: dict[str, tuple[str, Callable[..., Any]]] = {
    "stats": ("counts of inodes, bytes and chunks", stats),
    "superblock": ("superblock facts", superblock),
    "blobs": ("the blob table", blobs),
    "prefetch": ("the prefetch table", prefetch),
    "files": ("every entry with its attributes", files),
    "file": ("file PATH: one entry with xattrs, target and chunks", file_info),
}


def run_request(image: RafsImage, request: str) -> Any:
    """Answer one request line (``stats``, ``blobs``, ``file /etc/passwd``, ...)."""
    words = shlex.split(request)
    if not words:
        raise UsageError("empty request")
    cmd, args = words[0], words[1:]
    if cmd not in REQUESTS:
        raise UsageError(f"unknown request '{cmd}': choose one of {', '.join(REQUESTS)}")
    fn = REQUESTS[cmd][1]
    if cmd == "file":
        if len(args) != 1:
            raise UsageError("usage: file PATH")
        return fn(image, args[0])
    if args:
        raise UsageError(f"request '{cmd}' takes no argument")
    return fn(image)
