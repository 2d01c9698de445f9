"""Helpers for testing the read pipeline, caches and prefetchers against real components.

- :func:`write_tree` and :func:`build_image` make a source tree and a RAFS v6 image of it;
  :func:`localfs_config` is a nydusd config for it (localfs backend, optional blobcache).
- :func:`all_chunks` and :func:`chunks_by_key` list an image's chunk records.
- :func:`verify_blob_cache` checks that every chunk a blob cache marks ready holds bytes whose digest
  matches the chunk record (what the crash test asserts after each kill).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from nydus_core.interfaces import Digester
from nydus_core.rafs.model import ChunkInfo

__all__ = ["all_chunks", "build_image", "chunks_by_key", "localfs_config",
           "verify_blob_cache", "write_tree"]


def verify_blob_cache(data_path: str | os.PathLike[str], ready: Iterable[ChunkInfo],
                      digester: Digester) -> list[ChunkInfo]:
    """Return the chunks of ``ready`` whose bytes in the cache file ``data_path`` do not match
    their digest (an empty list means the cache is consistent)."""
    bad: list[ChunkInfo] = []
    with open(data_path, "rb") as f:
        fd = f.fileno()
        for c in ready:
            data = os.pread(fd, c.uncompressed_size, c.uncompressed_offset)
            if digester.digest(data) != c.block_id:
                bad.append(c)
    return bad


def chunks_by_key(chunks: Iterable[ChunkInfo]) -> Mapping[tuple[int, int], ChunkInfo]:
    """Return the distinct stored chunks of ``chunks`` keyed by (blob index, compressed offset)."""
    out: dict[tuple[int, int], ChunkInfo] = {}
    for c in chunks:
        out.setdefault((c.blob_index, c.compressed_offset), c)
    return out


def all_chunks(image: Any) -> list[ChunkInfo]:
    """Return every chunk record of every regular file of ``image`` (walk order)."""
    out: list[ChunkInfo] = []
    for _path, ino in image.walk():
        if image.getattr(ino).is_reg:
            out.extend(image.chunks(ino))
    return out


def write_tree(root: str | os.PathLike[str], files: Mapping[str, bytes | str | None]) -> None:
    """Create ``files`` under ``root``: bytes = a regular file, None = a directory, str starting with
    ``"->"`` = a symlink to the rest of the string."""
    for path, content in sorted(files.items()):
        target = os.path.join(os.fspath(root), path.lstrip("/"))
        if content is None:
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if isinstance(content, str):
            os.symlink(content.removeprefix("->"), target)
        else:
            with open(target, "wb") as f:
                f.write(content)


def build_image(workdir: str | os.PathLike[str], files: Mapping[str, bytes | str | None], *,
                name: str = "image", **options: Any) -> tuple[str, str, Any]:
    """Build a RAFS v6 image of ``files`` with :mod:`nydus_core.builder` (``options`` are
    :class:`~nydus_core.builder.BuildOptions` fields). Returns ``(bootstrap, blob_dir, result)``."""
    from nydus_core.builder import BuildOptions, build

    base = os.path.join(os.fspath(workdir), name)
    src, blob_dir, boot = base + ".src", base + ".blobs", base + ".boot"
    os.makedirs(src, exist_ok=True)
    write_tree(src, files)
    result = build(src, bootstrap=boot, blob_dir=blob_dir, options=BuildOptions(**options))
    return boot, blob_dir, result


def localfs_config(blob_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, *,
                   cache_config: Mapping[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """Return a nydusd v1 config dict: the localfs backend on ``blob_dir``, a blobcache in
    ``cache_dir`` (if given, plus ``cache_config`` keys), and ``top`` keys (``digest_validate``,
    ``amplify_io``, ``fs_prefetch``...)."""
    device: dict[str, Any] = {"backend": {"type": "localfs", "config": {"dir": os.fspath(blob_dir)}}}
    if cache_dir is not None:
        device["cache"] = {"type": "blobcache",
                           "config": {"work_dir": os.fspath(cache_dir), **(cache_config or {})}}
    return {"device": device, "mode": "direct", **top}
