"""What a build or merge is asked to do (:class:`BuildOptions`) and what it produced (results).

The fields mirror ``nydus-image create`` / ``merge`` flags (upstream-surface.md); the CLI maps flags
onto them one to one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..rafs.constants import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, valid_chunk_size
from ..rafs.model import BlobInfo

#: ``--type`` values the builder implements (``directory`` is upstream's alias of ``dir-rafs``).
SOURCE_TYPES = ("dir-rafs", "directory", "tar-rafs", "targz-rafs", "targz-ref", "tar-ref")
#: Upstream ``--type`` values nydus-py does not build.
UNSUPPORTED_SOURCE_TYPES = ("estargz-rafs", "estargz-ref", "estargztoc-ref", "stargz_index",
                            "tar-tarfs")
WHITEOUT_SPECS = ("oci", "overlayfs", "none")

#: ``progress(bytes_done, bytes_total_or_None)``
ProgressCallback = Callable[[int, "int | None"], None]


@dataclass
class BuildOptions:
    """Options of one ``create`` build (defaults as upstream ``nydus-image create``).

    * ``compressor``/``digester``: plugin names (``none``, ``lz4_block``, ``zstd``; ``blake3``,
      ``sha256``), looked up in the plugin registries.
    * ``blob_toc``: ``--features blob-toc``; ``inline_meta``: ``--blob-inline-meta``.
    * ``blob_id``: ``--blob-id`` (override the blob id; default sha256 of the blob file).
    * ``chunk_dict``: ``--chunk-dict`` bootstrap path (``bootstrap=PATH`` accepted too).
    * ``parent_bootstrap``: apply this layer on top of that image.
    * ``prefetch``: paths for the prefetch table (``--prefetch-policy fs``); ``None`` = no table.
    * ``workers``: compression threads, and worker processes reading small files (``None`` = CPU
      count; 1 reads everything in this process).
    * ``progress``: called with ``(bytes_done, bytes_total | None)`` while file data is read.
    * ``estargz``: the tar is an eStargz layer: its TOC (``stargz.index.json``) and landmark files
      are left out, as upstream does.
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE
    compressor: str = "zstd"
    digester: str = "blake3"
    fs_version: int = 6
    blob_toc: bool = False
    inline_meta: bool = False
    blob_id: str | None = None
    chunk_dict: str | Path | None = None
    parent_bootstrap: str | Path | None = None
    prefetch: Sequence[str | bytes] | None = None
    whiteout_spec: str = "oci"
    repeatable: bool = False
    workers: int | None = None
    progress: ProgressCallback | None = None
    estargz: bool = False

    def validate(self) -> None:
        """Raise :class:`UsageError` for a value upstream would refuse."""
        if not valid_chunk_size(self.chunk_size):
            raise UsageError(
                f"invalid chunk size {self.chunk_size:#x}: must be a power of two between "
                f"{MIN_CHUNK_SIZE:#x} and {MAX_CHUNK_SIZE:#x}"
            )
        if self.fs_version != 6:
            raise UsageError(f"fs version {self.fs_version} cannot be written: nydus-py writes RAFS v6 only")
        if self.whiteout_spec not in WHITEOUT_SPECS:
            raise UsageError(
                f"invalid whiteout spec '{self.whiteout_spec}': choose one of {', '.join(WHITEOUT_SPECS)}"
            )
        if self.workers is not None and self.workers < 1:
            raise UsageError("workers must be at least 1")
        if self.blob_id is not None and not 0 < len(self.blob_id) <= 64:
            raise UsageError(f"invalid blob id '{self.blob_id}': 1 to 64 characters")


@dataclass
class BuildStats:
    """Counters of one build."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    others: int = 0
    hardlinks: int = 0
    bytes_read: int = 0
    chunks: int = 0
    chunks_new: int = 0
    chunks_dedup: int = 0  # reused from this image, the parent or the chunk dict
    bytes_stored: int = 0  # compressed chunk bytes written to the blob


@dataclass
class BuildResult:
    """What :func:`~nydus_core.builder.build` wrote.

    ``blob_path``/``blob_info`` are ``None`` when the build had no data (no blob was written);
    ``blobs`` is the bootstrap's blob table.
    """

    bootstrap_path: Path | None
    blob_path: Path | None
    blob_info: BlobInfo | None
    blobs: list[BlobInfo]
    inode_count: int
    bootstrap_size: int
    stats: BuildStats = field(default_factory=BuildStats)
    #: tar builds: paths (``/a/b``) of the directories the tar did not list (created implicitly);
    #: give them to :func:`~nydus_core.builder.merge` so they keep a lower layer's attributes
    implicit_dirs: list[bytes] = field(default_factory=list)

    @property
    def blob_id(self) -> str | None:
        """The id of the blob this build wrote, if any."""
        return self.blob_info.blob_id if self.blob_info else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``-J/--output-json`` writes)."""
        return {
            "bootstrap": str(self.bootstrap_path) if self.bootstrap_path else None,
            "blob": str(self.blob_path) if self.blob_path else None,
            "blob_id": self.blob_id,
            "blob_size": self.blob_info.compressed_size if self.blob_info else 0,
            "blobs": [b.blob_id for b in self.blobs],
            "fs_version": "6",
            "inodes": self.inode_count,
            "stats": vars(self.stats).copy(),
        }


@dataclass
class MergeResult:
    """What :func:`~nydus_core.builder.merge` wrote."""

    bootstrap_path: Path
    blobs: list[BlobInfo]
    inode_count: int
    bootstrap_size: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``-J/--output-json`` writes)."""
        return {
            "bootstrap": str(self.bootstrap_path),
            "blobs": [b.blob_id for b in self.blobs],
            "fs_version": "6",
            "inodes": self.inode_count,
        }
