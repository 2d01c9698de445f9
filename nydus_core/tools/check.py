"""``nydus-image check``: decode every inode of an image and verify every chunk against its digest."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BuildError, IntegrityError, NydusError
from ..plugins import compressor_by_id
from ..rafs.blobmeta import read_blob_meta
from ..rafs.constants import BlobFeatures
from ..rafs.image import RafsImage, open_image
from ..rafs.model import BlobInfo, ChunkInfo
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


def _walk_metadata(image: RafsImage, report: CheckReport, bootstrap: str) -> list[int]:
    """Decode every inode, name, link, xattr and chunk record; count them into ``report``; return the
    regular files' inode numbers (each once)."""
    files: list[int] = []
    seen: set[int] = set()
    for _path, ino, attrs in image.walk_attrs():
        report.inodes += 1
        if attrs.has_xattr:
            image.xattrs(ino)
        if attrs.is_dir:
            report.dirs += 1
        elif attrs.is_reg:
            if ino in seen:
                report.hardlinks += 1
                continue
            seen.add(ino)
            report.files += 1
            report.bytes += attrs.size
            covered = image.chunk_bytes(ino)
            if covered > attrs.size:
                raise IntegrityError(f"{bootstrap}: inode {ino} has {covered} bytes of chunks "
                                     f"for a file of {attrs.size} bytes")
            files.append(ino)
        elif stat.S_ISLNK(attrs.mode):
            report.symlinks += 1
            image.readlink(ino)
        else:
            report.others += 1
    return files


def self_check(data: bytes, name: str) -> CheckReport:
    """Walk a bootstrap just written (held in ``data``) as :func:`check_image` does, without blobs.

    ``create`` and ``merge`` run it before the bootstrap reaches its name, so an image they report as
    built never fails ``check``; any failure is a :class:`~nydus_core.errors.BuildError` naming ``name``."""
    try:
        image = open_bootstrap_bytes(data, name)
        try:
            comp, dig = algorithm_names(image)
            report = CheckReport(name, image.version, comp, dig, image.chunk_size,
                                 [_blob_dict(b) for b in image.blobs])
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
