"""Where ``check`` and ``unpack`` read chunk data from: a blob directory or any backend plugin."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import BackendError, BlobNotFoundError, IntegrityError, plugin_errors
from ..interfaces import Backend
from ..rafs.image import RafsImage
from ..rafs.model import BlobInfo, ChunkInfo
from .chunkreader import BlobDirReader, ChunkReader


class ChunkSource(Protocol):
    """Reads verified chunk data (what check/unpack need)."""

    def read_chunk(self, blob: BlobInfo, chunk: ChunkInfo) -> bytes: ...

    def read_blob(self, blob: BlobInfo, offset: int, length: int) -> bytes: ...

    def read(self, image: RafsImage, ino: int, offset: int = 0, size: int | None = None) -> bytes: ...

    def close(self) -> None: ...


class BackendChunkSource(ChunkReader):
    """Chunk data fetched from a backend plugin (``--backend-type``/``--config``), always verified."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend

    def read_blob(self, blob: BlobInfo, offset: int, length: int) -> bytes:
        """Fetch a range of the blob from the backend."""
        with plugin_errors(BackendError, f"backend '{self.backend.name}' failed reading blob "
                           f"{blob.blob_id} at {offset}+{length}"):
            return self.backend.read(blob.blob_id, offset, length)

    def close(self) -> None:
        """Close the backend."""
        self.backend.close()


class SingleBlobSource(BlobDirReader):
    """Chunk data of every blob read from one file (``unpack --blob FILE``)."""

    def __init__(self, blob_file: str | os.PathLike[str]) -> None:
        super().__init__(os.path.dirname(os.path.abspath(blob_file)) or ".")
        self.blob_file = Path(blob_file)

    def blob_path(self, blob_id: str) -> Path:
        """Every blob id maps to the one file."""
        return self.blob_file


def open_chunk_source(
    *,
    blob_dir: str | None = None,
    blob_file: str | None = None,
    backend_type: str | None = None,
    backend_config: Mapping[str, Any] | None = None,
    config_path: str | None = None,
) -> ChunkSource | None:
    """Return the chunk source the flags ask for, or None when none was given (metadata only)."""
    given = [x for x in (blob_dir, blob_file, backend_type, config_path) if x]
    if len(given) > 1:
        from ..errors import UsageError

        raise UsageError("give only one of --blob-dir, --blob, --backend-type, --config")
    if blob_dir:
        if not os.path.isdir(blob_dir):
            raise BlobNotFoundError(f"{blob_dir}: blob directory does not exist")
        return BlobDirReader(blob_dir)
    if blob_file:
        return SingleBlobSource(blob_file)
    if backend_type:
        from ..plugins import registry

        cls = registry("backend").get(backend_type, where="--backend-type")
        return BackendChunkSource(cls(cls.validate_config(dict(backend_config or {}))))
    if config_path:
        from ..config import load_config

        cfg = load_config(config_path)
        return BackendChunkSource(cfg.require_backend().create())
    return None


def unique_chunks(image: RafsImage, inos: Sequence[int]) -> list[tuple[BlobInfo, ChunkInfo]]:
    """Return each distinct stored chunk of the given files once (dedup by blob and offset)."""
    seen: set[tuple[int, int]] = set()
    out: list[tuple[BlobInfo, ChunkInfo]] = []
    for ino in inos:
        for c in image.chunks(ino):
            key = (c.blob_index, c.compressed_offset)
            if key in seen:
                continue
            seen.add(key)
            if c.blob_index >= len(image.blobs):
                raise IntegrityError(
                    f"{image.path}: chunk of inode {ino} names blob index {c.blob_index}, "
                    f"the image has {len(image.blobs)} blobs"
                )
            out.append((image.blobs[c.blob_index], c))
    return out


def algorithm_names(image: RafsImage) -> tuple[str, str]:
    """Return the upstream names of the image's compressor and digester."""
    from ..plugins import UPSTREAM_IDS

    return (UPSTREAM_IDS["compressor"].get(image.compressor, f"id {image.compressor}"),
            UPSTREAM_IDS["digester"].get(image.digester, f"id {image.digester}"))


def use_real_blob_ids(image: RafsImage, bootstrap: str | os.PathLike[str]) -> None:
    """Give the blobs of an image opened by a tool their real ids: a per-layer bootstrap of an
    inline-meta blob records the placeholder ``x…x`` and is named after its blob (as nydusd does)."""
    from ..storage.blobids import resolve_blob_ids

    ids = resolve_blob_ids(image.blobs, bootstrap_path=bootstrap)
    image.blobs = [b if b.blob_id == i else dataclasses.replace(b, blob_id=i)
                   for b, i in zip(image.blobs, ids)]
