"""``nydus-image check``: decode every inode of an image and verify every chunk against its digest."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pickle
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BuildError, IntegrityError, NydusError
from ..plugins import compressor_by_id
from ..rafs.blobmeta import read_blob_meta
from ..rafs.constants import BlobFeatures
from ..rafs.image import RafsImage, open_image
from ..rafs.model import BlobInfo, ChunkInfo, InodeAttrs
from ..rafs.reader import open_bootstrap_bytes
from ..rafs.zran_read import meta_blob_id
from .datasource import ChunkSource, algorithm_names, unique_chunks, use_real_blob_ids

__all__ = ["CheckReport", "check_image", "self_check"]

log = logging.getLogger(__name__)


@dataclass
class CheckReport:
    """What ``check`` found: the image's shape and how many chunks were verified."""

    bootstrap: str
    fs_version: int
    compressor: str
    digester: str
    chunk_size: int
    blobs: list[dict[str, Any]]
    inodes: int = 0
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    others: int = 0
    hardlinks: int = 0
    bytes: int = 0
    chunks_verified: int = 0
    bytes_verified: int = 0
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``-J`` writes)."""
        return dict(vars(self))


def _blob_dict(b: Any) -> dict[str, Any]:
    return {"blob_id": b.blob_id, "chunk_count": b.chunk_count, "compressed_size": b.compressed_size,
            "uncompressed_size": b.uncompressed_size, "features": b.features}


def check_image(
    bootstrap: str | os.PathLike[str],
    source: ChunkSource | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    max_errors: int = 20,
) -> CheckReport:
    """Walk the whole image (every inode, name, link, xattr and chunk record is decoded and
    bounds-checked); with a chunk ``source``, fetch and verify every distinct chunk.

    Raises the first :class:`~nydus_core.errors.FormatError` of the metadata; chunks that fail
    verification are listed in ``report.errors`` (at most ``max_errors``).
    """
    image: RafsImage = open_image(bootstrap)
    try:
        if source is not None:
            use_real_blob_ids(image, bootstrap)
        comp, dig = algorithm_names(image)
        report = CheckReport(os.fspath(bootstrap), image.version, comp, dig, image.chunk_size,
                             [_blob_dict(b) for b in image.blobs])
        files = _walk_metadata(image, report, os.fspath(bootstrap))
        if source is None:
            return report
        todo = unique_chunks(image, files)
        report.errors.extend(_check_blob_meta(image, source, todo)[:max_errors])
        total = len(todo)
        for i, (blob, chunk) in enumerate(todo, 1):
            try:
                source.read_chunk(blob, chunk)
            except NydusError as exc:
                report.errors.append(str(exc))
                if len(report.errors) >= max_errors:
                    break
            else:
                report.chunks_verified += 1
                report.bytes_verified += chunk.uncompressed_size
            if progress:
                progress(i, total)
        return report
    finally:
        image.close()


class _Walk:
    """One walk's state: counts go into ``report``; regular files are checked once (hard links
    counted), their inode numbers kept in ``files`` with their sizes."""

    def __init__(self, image: RafsImage, report: CheckReport, bootstrap: str) -> None:
        self.image, self.report, self.bootstrap = image, report, bootstrap
        self.files: dict[int, int] = {}

    def entry(self, ino: int, attrs: InodeAttrs) -> None:
        """Decode and check what one inode holds besides names: xattrs, chunks, link target."""
        image, report = self.image, self.report
        report.inodes += 1
        if attrs.has_xattr:
            image.xattrs(ino)
        fmt = attrs.mode & 0o170000
        if fmt == stat.S_IFREG:
            files = self.files
            if ino in files:
                report.hardlinks += 1
                return
            size = files[ino] = attrs.size
            report.files += 1
            report.bytes += size
            covered = image.chunk_bytes(ino)
            if covered > size:
                raise IntegrityError(f"{self.bootstrap}: inode {ino} has {covered} bytes of chunks "
                                     f"for a file of {size} bytes")
        elif fmt == stat.S_IFDIR:
            report.dirs += 1
        elif stat.S_ISLNK(attrs.mode):
            report.symlinks += 1
            image.readlink(ino)
        else:
            report.others += 1

    def subtree(self, path: bytes, ino: int) -> None:
        """Check ``ino`` (at ``path``) and, for a directory, everything below it."""
        attrs = self.image.getattr(ino)
        if not attrs.is_dir:
            self.entry(ino, attrs)
            return
        for _path, child, child_attrs in self.image.walk_attrs(ino, path):
            self.entry(child, child_attrs)


def _walk_metadata(image: RafsImage, report: CheckReport, bootstrap: str) -> list[int]:
    """Decode every inode, name, link, xattr and chunk record; count them into ``report``; return the
    regular files' inode numbers (each once)."""
    walk = _Walk(image, report, bootstrap)
    for _path, ino, attrs in image.walk_attrs():
        walk.entry(ino, attrs)
    return list(walk.files)


#: a self-check of at least this many inodes is shared by two processes
SPLIT_MIN_INODES = 20_000
#: subtrees to share out (the directories above them are expanded, breadth first, by the parent)
SPLIT_SUBTREES = 64
_COUNTS = ("inodes", "files", "dirs", "symlinks", "others", "hardlinks", "bytes")


def _subtrees(walk: _Walk) -> list[tuple[bytes, int]]:
    """Expand the top directories breadth first (checking them) until there are enough subtrees."""
    image = walk.image
    level: list[tuple[bytes, int]] = [(b"", image.root_ino)]
    expanded_dirs: set[int] = set()
    while len(level) < SPLIT_SUBTREES:
        expanded: list[tuple[bytes, int]] = []
        for path, ino in level:
            attrs = image.getattr(ino)
            if attrs.is_dir and ino not in expanded_dirs:
                expanded_dirs.add(ino)
                walk.entry(ino, attrs)
                expanded.extend((path + b"/" + name, child) for name, child in image.readdir(ino))
            else:
                expanded.append((path, ino))
        if expanded == level:
            break
        level = expanded
    return level


def _child_check(walk: _Walk, subtrees: list[tuple[bytes, int]], wfd: int) -> None:
    """In the forked child: check ``subtrees``, send the counts and files (or the error), exit."""
    try:
        try:
            for path, ino in subtrees:
                walk.subtree(path, ino)
            msg: tuple[Any, ...] = ("ok", [getattr(walk.report, k) for k in _COUNTS], walk.files)
        except NydusError as exc:
            msg = ("error", type(exc), str(exc))
        except BaseException as exc:  # handed to the parent, which raises it
            msg = ("error", RuntimeError, f"self-check worker failed: {exc!r}")
        with os.fdopen(wfd, "wb") as out:
            out.write(pickle.dumps(msg))
    finally:
        os._exit(0)


def _split_walk(image: RafsImage, report: CheckReport, bootstrap: str) -> None:
    """:func:`_walk_metadata` shared with a forked child: the parent expands the top directories
    into subtrees, the child checks 9 of every 16, the parent the rest; the counts are merged
    (a file reached from both halves is one file and a hard link). Either's first error is raised."""
    walk = _Walk(image, report, bootstrap)
    subtrees = _subtrees(walk)
    image.prepare_chunk_checks()  # built once here, shared with the child by the fork
    # the child takes 9 of every 16 subtrees: this process also built the lookups and merges the counts
    child_part = [t for i, t in enumerate(subtrees) if i % 16 < 9]
    own_part = [t for i, t in enumerate(subtrees) if i % 16 >= 9]
    rfd, wfd = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no process to spare: check everything here
        os.close(rfd)
        os.close(wfd)
        for path, ino in subtrees:
            walk.subtree(path, ino)
        return
    if pid == 0:
        os.close(rfd)
        _child_check(_Walk(image, CheckReport(bootstrap, 0, "", "", 0, []), bootstrap), child_part, wfd)
    os.close(wfd)
    try:
        with os.fdopen(rfd, "rb") as inp:
            for path, ino in own_part:
                walk.subtree(path, ino)
            raw = inp.read()
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.waitpid(pid, 0)
    if not raw:
        raise RuntimeError("self-check worker exited without a result")
    msg = pickle.loads(raw)
    if msg[0] != "ok":
        raise msg[1](msg[2])
    for key, value in zip(_COUNTS, msg[1], strict=True):
        setattr(report, key, getattr(report, key) + value)
    for ino, size in msg[2].items():
        if ino in walk.files:  # reached from both halves: one file, one more hard link
            report.files -= 1
            report.bytes -= size
            report.hardlinks += 1


def self_check(data: bytes, name: str, *, workers: int | None = None) -> CheckReport:
    """Walk a bootstrap just written (held in ``data``) as :func:`check_image` does, without blobs.

    ``create`` and ``merge`` run it before the bootstrap reaches its name, so an image they report as
    built never fails ``check``; any failure is a :class:`~nydus_core.errors.BuildError` naming ``name``.
    With ``workers > 1`` (default: the CPU count) a large image is checked by two processes when the
    caller runs no other thread."""
    try:
        image = open_bootstrap_bytes(data, name)
        try:
            comp, dig = algorithm_names(image)
            report = CheckReport(name, image.version, comp, dig, image.chunk_size,
                                 [_blob_dict(b) for b in image.blobs])
            from ..builder import small_files  # here: the builder imports this module

            if ((workers or os.cpu_count() or 1) > 1 and image.inode_count() >= SPLIT_MIN_INODES
                    and small_files.may_fork()):
                _split_walk(image, report, name)
            else:
                _walk_metadata(image, report, name)
        finally:
            image.close()
    except NydusError as exc:
        raise BuildError(f"{name}: the bootstrap just built fails its own check: {exc}") from None
    return report


def _check_blob_meta(image: RafsImage, source: ChunkSource,
                     chunks: list[tuple[BlobInfo, ChunkInfo]]) -> list[str]:
    """nydusd locates chunks through each v6 blob's own blob.meta, not the bootstrap: check that its
    header matches the blob table and that every referenced chunk's record matches the chunk table."""
    if image.version != 6:
        return []
    errors: list[str] = []
    by_blob: dict[int, list[ChunkInfo]] = {}
    for blob, chunk in chunks:
        by_blob.setdefault(blob.blob_index, []).append(chunk)
    for index, blob_chunks in sorted(by_blob.items()):
        blob = image.blobs[index]
        if not blob.ci_uncompressed_size:
            continue  # no blob meta recorded (older images)
        try:
            holder = blob
            if blob.features & BlobFeatures.SEPARATE:  # *-ref: blob.meta is in the RAFS blob
                holder = dataclasses.replace(blob, blob_id=meta_blob_id(blob))
            _header, records = read_blob_meta(functools.partial(source.read_blob, holder), blob,
                                              compressor_for=compressor_by_id)
        except NydusError as exc:
            errors.append(str(exc))
            continue
        for c in blob_chunks:
            r = records[c.index] if c.index < len(records) else None
            if r is None or (r.compressed_offset, r.compressed_size, r.uncompressed_offset,
                             r.uncompressed_size) != (c.compressed_offset, c.compressed_size,
                                                      c.uncompressed_offset, c.uncompressed_size):
                errors.append(f"blob {blob.blob_id}: blob.meta record {c.index} disagrees with the "
                              f"bootstrap's chunk table ({r} vs offset {c.compressed_offset}+"
                              f"{c.compressed_size}, uncompressed {c.uncompressed_offset}+"
                              f"{c.uncompressed_size})")
    return errors
