"""The in-memory model shared by the RAFS reader, the v6 writer, the builder and the read pipeline.

- :class:`ChunkInfo` is the 80-byte chunk record (rafs-format.md §3).
- :class:`BlobInfo` describes one data blob of an image's blob table (§4.5/4.6, §5.5).
- :class:`TreeInode` is a filesystem tree as the builder produces it and the writer lays it out:
  a directory maps child names (bytes) to inodes; a hard link is the *same* ``TreeInode`` object
  under several names.
- :class:`InodeAttrs` is what the lazy reader returns for one inode.
"""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from .constants import BlobFeatures, ChunkFlags

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["BlobInfo", "ChunkInfo", "InodeAttrs", "TreeInode"]

_CHUNK = struct.Struct("<32sIIIIQQQII")
assert _CHUNK.size == 80


@dataclass(slots=True)
class ChunkInfo:
    """One chunk record (``RafsV5ChunkInfo``, 80 bytes on disk)."""

    block_id: bytes
    blob_index: int
    flags: int
    compressed_size: int
    uncompressed_size: int
    compressed_offset: int
    uncompressed_offset: int
    file_offset: int
    index: int
    crc32: int = 0

    @property
    def is_compressed(self) -> bool:
        """Whether the stored bytes are compressed with the image's compressor."""
        return bool(self.flags & ChunkFlags.COMPRESSED)

    def pack(self) -> bytes:
        """Return the 80-byte on-disk record."""
        return _CHUNK.pack(
            self.block_id, self.blob_index, self.flags, self.compressed_size, self.uncompressed_size,
            self.compressed_offset, self.uncompressed_offset, self.file_offset, self.index, self.crc32,
        )

    @classmethod
    def unpack_from(cls, buf: Buffer, offset: int = 0) -> ChunkInfo:
        """Decode an 80-byte record at ``offset`` of ``buf`` (the caller checks bounds)."""
        return cls(*_CHUNK.unpack_from(buf, offset))

    def with_file_offset(self, file_offset: int) -> ChunkInfo:
        """Return a copy placed at another file offset (a deduplicated chunk reused elsewhere)."""
        return ChunkInfo(
            self.block_id, self.blob_index, self.flags, self.compressed_size, self.uncompressed_size,
            self.compressed_offset, self.uncompressed_offset, file_offset, self.index, self.crc32,
        )


@dataclass
class BlobInfo:
    """One entry of an image's blob table (v5 blob + extended table, or v6 ``RafsV6Blob``)."""

    blob_id: str
    blob_index: int
    chunk_size: int
    chunk_count: int = 0
    compressor: int = 0  # algorithm id (§2.1)
    digester: int = 0
    features: int = 0
    compressed_size: int = 0  # size of the blob file
    uncompressed_size: int = 0  # size of the uncompressed blob image
    blob_toc_size: int = 0
    ci_compressor: int = 0
    ci_offset: int = 0
    ci_compressed_size: int = 0
    ci_uncompressed_size: int = 0
    blob_toc_digest: bytes = bytes(32)
    blob_meta_digest: bytes = bytes(32)
    blob_meta_size: int = 0
    cipher_iv: bytes = bytes(8)
    cipher_algo: int = 0
    readahead_offset: int = 0  # v5 only
    readahead_size: int = 0  # v5 only

    @property
    def has_inlined_meta(self) -> bool:
        """Whether the bootstrap is inlined into this data blob."""
        return bool(self.features & BlobFeatures.INLINED_FS_META)

    @property
    def has_toc(self) -> bool:
        """Whether the blob ends with a ToC."""
        return bool(self.features & BlobFeatures.HAS_TOC)


@dataclass(eq=False)
class TreeInode:
    """One inode of a filesystem tree. Hard links are one object reachable by several names."""

    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    mtime_nsec: int = 0
    size: int = 0  # regular files: content size; symlinks: len(target); dirs: computed by writers
    rdev: int = 0
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    symlink: bytes | None = None
    chunks: list[ChunkInfo] = field(default_factory=list)
    children: dict[bytes, TreeInode] = field(default_factory=dict)

    @property
    def is_dir(self) -> bool:
        """Whether this is a directory."""
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        """Whether this is a regular file."""
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        """Whether this is a symbolic link."""
        return stat.S_ISLNK(self.mode)


class InodeAttrs(NamedTuple):
    """Attributes of one inode as the lazy reader decodes them (a tuple: cheap on the hot path).

    ``ino`` is the reader's inode number (v5: ``i_ino``; v6: the nid); hard links share it.
    """

    ino: int
    mode: int
    uid: int
    gid: int
    size: int
    nlink: int
    mtime: int
    mtime_nsec: int
    rdev: int
    has_xattr: bool

    @property
    def is_dir(self) -> bool:
        """Whether this is a directory."""
        return self.mode & 0o170000 == 0o040000

    @property
    def is_reg(self) -> bool:
        """Whether this is a regular file."""
        return self.mode & 0o170000 == 0o100000

    @property
    def is_symlink(self) -> bool:
        """Whether this is a symbolic link."""
        return self.mode & 0o170000 == 0o120000
