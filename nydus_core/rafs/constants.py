"""On-disk constants of RAFS v5/v6 and Nydus data blobs (rafs-format.md §2)."""

from __future__ import annotations

from enum import IntFlag

__all__ = [
    "BLOB_ID_INLINE_PLACEHOLDER",
    "BLOB_META_HEADER_SIZE",
    "BLOB_META_MAGIC",
    "CHUNK_INFO_SIZE",
    "CIPHER_NONE",
    "COMPRESSION_FLAGS_MASK",
    "COMPRESSION_FLAG_ORDER",
    "COMPRESSOR_GZIP",
    "COMPRESSOR_LZ4_BLOCK",
    "COMPRESSOR_NONE",
    "COMPRESSOR_ZSTD",
    "DEFAULT_CHUNK_SIZE",
    "DIGESTER_BLAKE3",
    "DIGESTER_SHA256",
    "DIGEST_FLAGS_MASK",
    "DIGEST_FLAG_ORDER",
    "EROFS_BLKSZBITS",
    "EROFS_BLOCK_SIZE",
    "EROFS_CHUNK_FORMAT_INDEXES",
    "EROFS_FEATURE_COMPAT_RAFS_V6",
    "EROFS_FEATURE_INCOMPAT_CHUNKED_FILE",
    "EROFS_FEATURE_INCOMPAT_DEVICE_TABLE",
    "EROFS_FT_BLKDEV",
    "EROFS_FT_CHRDEV",
    "EROFS_FT_DIR",
    "EROFS_FT_FIFO",
    "EROFS_FT_REG_FILE",
    "EROFS_FT_SOCK",
    "EROFS_FT_SYMLINK",
    "EROFS_FT_UNKNOWN",
    "EROFS_INODE_CHUNK_BASED",
    "EROFS_INODE_COMPACT_SIZE",
    "EROFS_INODE_EXTENDED_SIZE",
    "EROFS_INODE_FLAT_INLINE",
    "EROFS_INODE_FLAT_PLAIN",
    "EROFS_MAGIC",
    "EROFS_SUPER_OFFSET",
    "EROFS_XATTR_PREFIXES",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "MIN_V6_BOOTSTRAP_SIZE",
    "RAFS_V5_MAGIC",
    "RAFS_V5_SUPERBLOCK_SIZE",
    "RAFS_V5_VERSION",
    "RAFS_V6_DEVTABLE_OFFSET",
    "RAFS_V6_DEVT_SLOTOFF",
    "RAFS_V6_EXT_SUPER_OFFSET",
    "SUPER_FLAGS_ALL",
    "TAR_BLOCK",
    "TOC_ENTRY_SIZE",
    "TOC_FLAG_LZ4",
    "TOC_FLAG_NONE",
    "TOC_FLAG_ZSTD",
    "TOC_NAME_BLOB",
    "TOC_NAME_BLOB_DIGEST",
    "TOC_NAME_BLOB_META",
    "TOC_NAME_BLOB_META_HEADER",
    "TOC_NAME_BOOTSTRAP",
    "TOC_NAME_TOC",
    "UNSUPPORTED_BLOB_FEATURES",
    "V6_BLOB_ENTRY_SIZE",
    "V6_DEVICE_SLOT_SIZE",
    "BlobFeatures",
    "ChunkFlags",
    "SuperFlags",
    "V5InodeFlags",
    "align_up",
    "is_power_of_two",
    "valid_chunk_size",
]

# -- detection ------------------------------------------------------------------------------------
RAFS_V5_MAGIC = 0x52414653
RAFS_V5_VERSION = 0x500
RAFS_V5_SUPERBLOCK_SIZE = 8192
EROFS_MAGIC = 0xE0F5E1E2
EROFS_SUPER_OFFSET = 1024
RAFS_V6_EXT_SUPER_OFFSET = 1152
RAFS_V6_DEVTABLE_OFFSET = 1408
RAFS_V6_DEVT_SLOTOFF = 11
EROFS_BLOCK_SIZE = 4096
EROFS_BLKSZBITS = 12
EROFS_FEATURE_COMPAT_RAFS_V6 = 0x40000000
EROFS_FEATURE_INCOMPAT_CHUNKED_FILE = 0x4
EROFS_FEATURE_INCOMPAT_DEVICE_TABLE = 0x8
EROFS_CHUNK_FORMAT_INDEXES = 0x0020
MIN_V6_BOOTSTRAP_SIZE = 8192

CHUNK_INFO_SIZE = 80  # RafsV5ChunkInfo
V6_BLOB_ENTRY_SIZE = 256
V6_DEVICE_SLOT_SIZE = 128
BLOB_META_HEADER_SIZE = 4096
BLOB_META_MAGIC = 0xB10BB10B
TOC_ENTRY_SIZE = 128
TAR_BLOCK = 512

DEFAULT_CHUNK_SIZE = 0x100000
MIN_CHUNK_SIZE = 0x1000
MAX_CHUNK_SIZE = 0x1000000
BLOB_ID_INLINE_PLACEHOLDER = "x" * 64

# Tar trailer names of blob sections (§6.3).
TOC_NAME_BLOB = "image.blob"
TOC_NAME_BLOB_META = "blob.meta"
TOC_NAME_BLOB_META_HEADER = "blob.meta.header"
TOC_NAME_BLOB_DIGEST = "blob.digest"
TOC_NAME_BOOTSTRAP = "image.boot"
TOC_NAME_TOC = "rafs.blob.toc"

# ToC entry compression flags.
TOC_FLAG_NONE = 0x1
TOC_FLAG_ZSTD = 0x2
TOC_FLAG_LZ4 = 0x4

# Algorithm ids (§2.1).
COMPRESSOR_NONE = 0
COMPRESSOR_LZ4_BLOCK = 1
COMPRESSOR_GZIP = 2
COMPRESSOR_ZSTD = 3
DIGESTER_BLAKE3 = 0
DIGESTER_SHA256 = 1
CIPHER_NONE = 0


class SuperFlags(IntFlag):
    """``RafsSuperFlags`` (v5 ``s_flags``, v6 extended superblock ``s_flags``)."""

    COMPRESSION_NONE = 0x1
    COMPRESSION_LZ4 = 0x2
    HASH_BLAKE3 = 0x4
    HASH_SHA256 = 0x8
    EXPLICIT_UID_GID = 0x10
    HAS_XATTR = 0x20
    COMPRESSION_GZIP = 0x40
    COMPRESSION_ZSTD = 0x80
    INLINED_CHUNK_DIGEST = 0x100
    TARFS_MODE = 0x200
    ENCRYPTION_NONE = 0x0100_0000
    ENCRYPTION_ASE_128_XTS = 0x0200_0000
    PRESERVED_COMPAT_5 = 0x0400_0000
    PRESERVED_COMPAT_4 = 0x0800_0000
    PRESERVED_COMPAT_3 = 0x1000_0000
    PRESERVED_COMPAT_2 = 0x2000_0000
    PRESERVED_COMPAT_1 = 0x4000_0000
    PRESERVED_COMPAT_0 = 0x8000_0000


SUPER_FLAGS_ALL = 0
for _f in SuperFlags:
    SUPER_FLAGS_ALL |= int(_f)

# Compressor flag bits in decode order, and the algorithm id each means.
COMPRESSION_FLAG_ORDER: tuple[tuple[int, int], ...] = (
    (SuperFlags.COMPRESSION_NONE, COMPRESSOR_NONE),
    (SuperFlags.COMPRESSION_LZ4, COMPRESSOR_LZ4_BLOCK),
    (SuperFlags.COMPRESSION_GZIP, COMPRESSOR_GZIP),
    (SuperFlags.COMPRESSION_ZSTD, COMPRESSOR_ZSTD),
)
DIGEST_FLAG_ORDER: tuple[tuple[int, int], ...] = (
    (SuperFlags.HASH_BLAKE3, DIGESTER_BLAKE3),
    (SuperFlags.HASH_SHA256, DIGESTER_SHA256),
)
COMPRESSION_FLAGS_MASK = 0x1 | 0x2 | 0x40 | 0x80
DIGEST_FLAGS_MASK = 0x4 | 0x8


class BlobFeatures(IntFlag):
    """``BlobFeatures`` (v5 extended blob table, v6 blob table, blob-meta header)."""

    ALIGNED = 0x1
    INLINED_FS_META = 0x2
    CHUNK_INFO_V2 = 0x4
    ZRAN = 0x8
    SEPARATE = 0x10
    INLINED_CHUNK_DIGEST = 0x20
    TARFS = 0x40
    BATCH = 0x80
    ENCRYPTED = 0x100
    IS_CHUNKDICT_GENERATED = 0x200
    IS_SEPARATED_WITH_PREFETCH_FILES = 0x400
    EXTERNAL = 0x800
    HAS_TAR_HEADER = 0x1000_0000
    HAS_TOC = 0x2000_0000
    CAP_TAR_TOC = 0x4000_0000
    V5_NO_EXT_BLOB_TABLE = 0x8000_0000


class ChunkFlags(IntFlag):
    """``BlobChunkFlags`` of the 80-byte chunk record."""

    COMPRESSED = 0x1
    HOLECHUNK = 0x2
    ENCRYPTED = 0x4
    BATCH = 0x8
    HAS_CRC32 = 0x10


class V5InodeFlags(IntFlag):
    """``RafsInodeFlags`` of v5 inode records."""

    SYMLINK = 0x1
    HARDLINK = 0x2
    XATTR = 0x4
    HAS_HOLE = 0x8


# Blob features nydus-py refuses to read, with the name used in the error.
UNSUPPORTED_BLOB_FEATURES: tuple[tuple[int, str], ...] = (
    (BlobFeatures.TARFS, "tarfs"),
    (BlobFeatures.BATCH, "batch chunks"),
    (BlobFeatures.ENCRYPTED, "encryption"),
    (BlobFeatures.EXTERNAL, "external blobs"),
)

# EROFS inode layouts (§5.8) and xattr name indexes (§5.9).
EROFS_INODE_FLAT_PLAIN = 0
EROFS_INODE_FLAT_INLINE = 2
EROFS_INODE_CHUNK_BASED = 4
EROFS_INODE_COMPACT_SIZE = 32
EROFS_INODE_EXTENDED_SIZE = 64
EROFS_XATTR_PREFIXES: dict[int, bytes] = {
    1: b"user.",
    2: b"system.posix_acl_access",
    3: b"system.posix_acl_default",
    4: b"trusted.",
    6: b"security.",
}
# EROFS dirent file types.
EROFS_FT_UNKNOWN = 0
EROFS_FT_REG_FILE = 1
EROFS_FT_DIR = 2
EROFS_FT_CHRDEV = 3
EROFS_FT_BLKDEV = 4
EROFS_FT_FIFO = 5
EROFS_FT_SOCK = 6
EROFS_FT_SYMLINK = 7


def is_power_of_two(n: int) -> bool:
    """Return whether ``n`` is a positive power of two."""
    return n > 0 and n & (n - 1) == 0


def valid_chunk_size(n: int) -> bool:
    """Return whether ``n`` is a chunk size upstream accepts (power of two, 4 KiB..16 MiB)."""
    return is_power_of_two(n) and MIN_CHUNK_SIZE <= n <= MAX_CHUNK_SIZE


def align_up(n: int, a: int) -> int:
    """Round ``n`` up to a multiple of ``a`` (a power of two)."""
    return (n + a - 1) & ~(a - 1)
