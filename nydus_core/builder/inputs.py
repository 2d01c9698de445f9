"""Existing images a build reads: a parent bootstrap, a chunk dict, per-layer bootstraps of a merge."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuildError, NydusError
from ..rafs.constants import BLOB_ID_INLINE_PLACEHOLDER
from ..rafs.image import RafsImage, open_image
from ..rafs.model import BlobInfo, ChunkInfo, TreeInode
from ..rafs.toc import blob_id_from_path
from .chunker import ChunkKey, unique_inodes


def open_bootstrap_checked(path: str | os.PathLike[str], what: str) -> RafsImage:
    """Open a bootstrap; errors name the file and what it was for."""
    p = Path(path)
    if not p.is_file():
        raise BuildError(f"{p}: {what} not found")
    try:
        return open_image(p)
    except NydusError:
        raise
    except OSError as exc:
        raise BuildError(f"{p}: cannot read {what}: {exc.strerror or exc}") from None


@dataclass
class LoadedImage:
    """An existing image decoded for building on: its tree, blob table and algorithms."""

    path: Path
    tree: TreeInode
    blobs: list[BlobInfo]
    chunk_size: int
    compressor: int
    digester: int
    explicit_uid_gid: bool
    prefetch_paths: list[bytes]


def load_image(path: str | os.PathLike[str], what: str, *, fix_placeholder: bool = True) -> LoadedImage:
    """Decode a whole bootstrap. With ``fix_placeholder`` an inline-meta placeholder blob id
    (``"x" * 64``) is replaced by the id the file name carries (error when it carries none)."""
    p = Path(path)
    with open_bootstrap_checked(p, what) as image:
        tree = image.to_tree()
        blobs = [dataclasses.replace(b) for b in image.blobs]
        prefetch_paths: list[bytes] = []
        wanted = set(image.prefetch_inodes())
        if wanted:
            for walk_path, ino in image.walk():
                if ino in wanted:
                    prefetch_paths.append(walk_path)
                    wanted.discard(ino)
        loaded = LoadedImage(
            p, tree, blobs, image.chunk_size, image.compressor, image.digester, image.explicit_uid_gid,
            prefetch_paths,
        )
    if fix_placeholder:
        for b in loaded.blobs:
            if b.blob_id == BLOB_ID_INLINE_PLACEHOLDER:
                real = blob_id_from_path(p)
                if real is None:
                    raise BuildError(
                        f"{p}: blob {b.blob_index} has the inline-meta placeholder id and the file name "
                        "is not a sha256 digest; give the real blob id"
                    )
                b.blob_id = real
    return loaded


def chunk_map(tree: TreeInode) -> dict[ChunkKey, ChunkInfo]:
    """Map ``(digest, size)`` to a chunk record of the tree (first one found wins)."""
    out: dict[ChunkKey, ChunkInfo] = {}
    for node in unique_inodes(tree):
        for c in node.chunks:
            out.setdefault((c.block_id, c.uncompressed_size), c)
    return out


def strip_chunk_dict_prefix(value: str | os.PathLike[str]) -> Path:
    """Accept upstream's ``bootstrap=PATH`` form of ``--chunk-dict`` as well as a plain path."""
    text = os.fspath(value)
    if text.startswith("bootstrap="):
        text = text[len("bootstrap="):]
    return Path(text)
