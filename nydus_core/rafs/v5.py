"""RAFS v5 reader: Nydus' native bootstrap layout (rafs-format.md §4).

Opening checks the superblock and table placement (§4.10) and decodes the blob table; inode records
are decoded on access through the inode table. ``ino`` is ``i_ino``: hard links share it, and the
record of inode ``ino`` is the one at inode index ``ino`` (the first link). A directory's children
are the consecutive indexes ``i_child_index ..`` sorted by name, so lookups binary search them.

Reporting choice: when EXPLICIT_UID_GID is clear uid/gid are reported as 0 (nydusd reports its own
euid/egid).
"""

from __future__ import annotations

import errno
import itertools
import stat
import struct
from bisect import bisect_right
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import FormatError
from .checks import (
    algorithms_from_flags,
    check_blob_supported,
    check_chunk,
    check_super_flags_supported,
    decode_blob_id,
)
from .constants import (
    CHUNK_INFO_SIZE,
    RAFS_V5_SUPERBLOCK_SIZE,
    SUPER_FLAGS_ALL,
    BlobFeatures,
    SuperFlags,
    V5InodeFlags,
    valid_chunk_size,
)
from .image import RafsImage
from .mapped import MappedBootstrap, align8, check_disjoint, check_name
from .model import BlobInfo, ChunkInfo, InodeAttrs

if TYPE_CHECKING:
    from typing_extensions import Buffer

_SB = struct.Struct("<IIIIQQQQQIIIIQ")
# RafsV5Inode without i_digest and i_reserved.
_INODE = struct.Struct("<32xQQIIIIQQQIIIHHIIQ8x")
# One decoded inode record: the integer fields of _INODE, indexed by the _PARENT, _MODE, ... constants.
_Record = tuple[int, ...]
assert _INODE.size == 128
_EXT_BLOB = struct.Struct("<IIQQ")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_II = struct.Struct("<II")

_INODE_SIZE = 128
# The v5 extended blob table drops unknown feature bits (and the internal V5_NO_EXT_BLOB_TABLE bit).
_KNOWN_BLOB_FEATURES = sum(int(f) for f in BlobFeatures) & ~int(BlobFeatures.V5_NO_EXT_BLOB_TABLE)
_EXT_BLOB_SIZE = 64
_MAX_NAME = 256
_FILE_TYPES = frozenset(
    {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK}
)
# Indexes into the decoded inode tuple.
_PARENT, _INO, _UID, _GID, _MODE, _SIZE, _FLAGS, _NLINK = 0, 1, 2, 3, 5, 6, 8, 9
_CHILD_INDEX, _CHILD_COUNT, _NAME_SIZE, _SYMLINK_SIZE, _RDEV, _MTIME_NSEC, _MTIME = 10, 11, 12, 13, 14, 15, 16
_S_IFMT, _S_IFREG, _S_IFDIR, _S_IFLNK = 0o170000, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK


class V5Image(RafsImage):
    """A RAFS v5 bootstrap opened for lazy reading (``ino`` = ``i_ino``)."""

    version = 5

    def __init__(self, mapped: MappedBootstrap) -> None:
        self._m = mapped
        self._buf = mapped.buf
        self._size = mapped.size
        self.path = mapped.path
        self._load()

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        m = self._m
        if m.size <= RAFS_V5_SUPERBLOCK_SIZE:
            raise m.error(f"too small for a RAFS v5 bootstrap ({m.size} bytes)")
        if m.size % 8:
            raise m.error(f"size {m.size} is not a multiple of 8")
        (_magic, _version, sb_size, block_size, flags, inodes_count, it_off, pf_off, bt_off, it_entries,
         pf_entries, bt_size, ext_entries, ext_off) = _SB.unpack_from(self._buf, 0)
        if sb_size != RAFS_V5_SUPERBLOCK_SIZE:
            raise m.error(f"superblock size {sb_size} (expected 8192)")
        if flags & ~SUPER_FLAGS_ALL:
            raise m.error(f"unknown superblock flags {flags & ~SUPER_FLAGS_ALL:#x}")
        check_super_flags_supported(m, flags)
        if not valid_chunk_size(block_size):
            raise m.error(f"invalid chunk size {block_size:#x} (power of two in 0x1000..0x1000000)")
        if it_entries == 0:
            raise m.error("inode table is empty")
        if inodes_count > it_entries:
            raise m.error(
                f"superblock records {inodes_count} inodes but only {it_entries} inode table entries"
            )
        regions = [
            ("inode table", it_off, it_entries * 4),
            ("prefetch table", pf_off, pf_entries * 4),
            ("blob table", bt_off, bt_size),
            ("extended blob table", ext_off, ext_entries * _EXT_BLOB_SIZE),
        ]
        for name, off, length in regions:
            if length:
                if off % 8 or off < RAFS_V5_SUPERBLOCK_SIZE:
                    raise m.error(f"{name} offset {off} is misaligned or inside the superblock")
                m.check(off, length, name)
        check_disjoint(m, regions)

        self.flags = flags
        self.chunk_size = block_size
        self.compressor, self.digester = algorithms_from_flags(flags)
        self.explicit_uid_gid = bool(flags & SuperFlags.EXPLICIT_UID_GID)
        self._inodes_count: int = inodes_count
        self._it_off, self._entries = it_off, it_entries
        self._pf_off, self._pf_entries = pf_off, pf_entries
        self.blobs: list[BlobInfo] = self._load_blobs(bt_off, bt_size, ext_off, ext_entries)
        self.root_ino = 1
        _off, root = self._record(1)
        if root[_INO] != 1 or not stat.S_ISDIR(root[_MODE]):
            raise m.error("inode 1 is not the root directory")

    def _load_blobs(self, bt_off: int, bt_size: int, ext_off: int, ext_entries: int) -> list[BlobInfo]:
        m, buf = self._m, self._buf
        blobs: list[BlobInfo] = []
        p, end = bt_off, bt_off + bt_size
        while end - p > 8:
            ra_off, ra_size = _II.unpack_from(buf, p)
            nul = buf.find(b"\0", p + 8, end)
            stop = end if nul < 0 else nul
            blob_id = decode_blob_id(m, buf[p + 8:stop], f"blob table entry {len(blobs)}")
            blobs.append(BlobInfo(
                blob_id=blob_id, blob_index=len(blobs), chunk_size=self.chunk_size,
                compressor=self.compressor, digester=self.digester,
                readahead_offset=ra_off, readahead_size=ra_size,
            ))
            p = stop + 1
        if ext_entries:
            if ext_entries != len(blobs):
                raise m.error(f"extended blob table has {ext_entries} entries for {len(blobs)} blobs")
            for i, blob in enumerate(blobs):
                chunk_count, features, usize, csize = _EXT_BLOB.unpack_from(buf, ext_off + i * _EXT_BLOB_SIZE)
                blob.chunk_count, blob.features = chunk_count, features & _KNOWN_BLOB_FEATURES
                blob.uncompressed_size, blob.compressed_size = usize, csize
                check_blob_supported(m, blob)
        return blobs

    # -- inode records -----------------------------------------------------------------------

    def _record(self, index: int) -> tuple[int, _Record]:
        """Return ``(offset, fields)`` of the inode record at inode index ``index`` (checked)."""
        entries = self._entries
        if not 1 <= index <= entries:
            raise self._m.error(f"inode index {index} out of range (1..{entries})")
        buf = self._buf
        entry = _U32.unpack_from(buf, self._it_off + 4 * (index - 1))[0]
        if not 1024 < entry < 1 << 29:
            raise self._m.error(f"inode table entry {index} is invalid ({entry})")
        off = entry << 3
        if off + _INODE_SIZE > self._size:
            self._m.check(off, _INODE_SIZE, "inode record {}", index)
        r = _INODE.unpack_from(buf, off)
        (parent, ino, _uid, _gid, _projid, mode, _size, _blocks, _flags, nlink, child_index, child_count,
         name_size, symlink_size, _rdev, _mtime_nsec, _mtime) = r
        fmt = mode & _S_IFMT
        if (ino == 0 or ino > entries or fmt not in _FILE_TYPES or nlink == 0
                or not 1 <= name_size <= _MAX_NAME
                or (index != 1 and (parent == 0 or (parent >= ino and not (fmt == _S_IFREG and nlink > 1))))
                or (fmt == _S_IFDIR and child_count
                    and (child_index <= ino or child_index + child_count - 1 > entries))
                or (fmt == _S_IFLNK and symlink_size == 0)):
            raise self._record_error(index, r)
        if off + _INODE_SIZE + ((name_size + 7) & ~7) + ((symlink_size + 7) & ~7) > self._size:
            raise self._m.error(f"inode record {index}: name or symlink target lies outside the file")
        return off, r

    def _record_error(self, index: int, r: _Record) -> FormatError:
        """Describe the first §4.10 check that record ``r`` fails."""
        (parent, ino, _uid, _gid, _projid, mode, _size, _blocks, _flags, nlink, child_index, child_count,
         name_size, symlink_size, *_rest) = r
        where = f"inode record {index}"
        if ino == 0 or ino > self._entries:
            return self._m.error(f"{where}: inode number {ino} out of range")
        if stat.S_IFMT(mode) not in _FILE_TYPES:
            return self._m.error(f"{where}: invalid file mode {mode:#o}")
        if nlink == 0:
            return self._m.error(f"{where}: link count is 0")
        if not 1 <= name_size <= _MAX_NAME:
            return self._m.error(f"{where}: name size {name_size}")
        if index != 1 and parent == 0:
            return self._m.error(f"{where}: no parent")
        last_child = child_index + child_count - 1
        if stat.S_ISDIR(mode) and child_count and (child_index <= ino or last_child > self._entries):
            return self._m.error(f"{where}: children {child_index}+{child_count} out of range")
        if stat.S_ISLNK(mode) and symlink_size == 0:
            return self._m.error(f"{where}: symlink without target")
        return self._m.error(f"{where}: parent {parent} is not below inode {ino}")

    def _inode(self, ino: int) -> tuple[int, _Record]:
        """Return the record of inode number ``ino`` (its first link)."""
        off, r = self._record(ino)
        if r[_INO] != ino:
            raise self._m.error(f"inode table entry {ino} holds inode {r[_INO]}")
        return off, r

    def _name(self, off: int, r: _Record) -> bytes:
        return self._buf[off + _INODE_SIZE:off + _INODE_SIZE + r[_NAME_SIZE]]

    def inode_count(self) -> int:
        """Return ``s_inodes_count`` of the superblock (old builders did not count the root)."""
        return self._inodes_count

    def getattr(self, ino: int) -> InodeAttrs:
        """Return the attributes of inode ``ino``."""
        _off, r = self._inode(ino)
        explicit = self.explicit_uid_gid
        return InodeAttrs(
            ino=ino, mode=r[_MODE], uid=r[_UID] if explicit else 0, gid=r[_GID] if explicit else 0,
            size=r[_SIZE], nlink=r[_NLINK], mtime=r[_MTIME], mtime_nsec=r[_MTIME_NSEC], rdev=r[_RDEV],
            has_xattr=bool(r[_FLAGS] & V5InodeFlags.XATTR),
        )

    def parent(self, ino: int) -> int | None:
        """Return ``i_parent`` of inode ``ino`` (the root is its own parent)."""
        _off, r = self._inode(ino)
        return r[_PARENT] or ino

    # -- directories -------------------------------------------------------------------------

    def _children(self, ino: int) -> tuple[int, int]:
        _off, r = self._inode(ino)
        if not stat.S_ISDIR(r[_MODE]):
            raise NotADirectoryError(errno.ENOTDIR, f"inode {ino} is not a directory")
        return r[_CHILD_INDEX], r[_CHILD_COUNT]

    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        """Yield ``(name, ino)`` of directory ``ino``'s children from entry index ``offset``."""
        first, count = self._children(ino)
        return self._iter_children(ino, first, count, max(offset, 0))

    def _iter_children(self, ino: int, first: int, count: int, offset: int) -> Iterator[tuple[bytes, int]]:
        m = self._m
        for index in range(first + offset, first + count):
            off, r = self._record(index)
            yield check_name(m, self._name(off, r), f"inode record {index}"), r[_INO]

    def lookup(self, parent: int, name: bytes) -> int | None:
        """Return the ino of ``name`` in directory ``parent`` (binary search of its children)."""
        first, count = self._children(parent)
        lo, hi = first, first + count - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            off, r = self._record(mid)
            cur = self._name(off, r)
            if cur == name:
                return r[_INO]
            if name < cur:
                hi = mid - 1
            else:
                lo = mid + 1
        return None

    # -- symlinks, xattrs, chunks ------------------------------------------------------------

    def readlink(self, ino: int) -> bytes:
        """Return the target of symlink ``ino``."""
        off, r = self._inode(ino)
        if not stat.S_ISLNK(r[_MODE]):
            raise OSError(errno.EINVAL, f"inode {ino} is not a symlink")
        p = off + _INODE_SIZE + align8(r[_NAME_SIZE])
        return self._buf[p:p + r[_SYMLINK_SIZE]]

    def _xattr_table(self, off: int, r: _Record, ino: int) -> tuple[int, int]:
        """Return ``(start, size)`` of the xattr pairs (size 0 when none)."""
        p = off + _INODE_SIZE + align8(r[_NAME_SIZE]) + align8(r[_SYMLINK_SIZE])
        if not r[_FLAGS] & V5InodeFlags.XATTR:
            return p, 0
        self._m.check(p, 8, "xattr table of inode {}", ino)
        size = _U64.unpack_from(self._buf, p)[0]
        self._m.check(p + 8, size, "xattr table of inode {}", ino)
        return p + 8, size

    def xattrs(self, ino: int) -> dict[bytes, bytes]:
        """Return the xattrs of ``ino`` (full names)."""
        off, r = self._inode(ino)
        start, size = self._xattr_table(off, r, ino)
        m, buf, out = self._m, self._buf, {}
        p, end = start, start + size
        while p < end:
            if p + 4 > end:
                raise m.error(f"inode {ino}: truncated xattr pair")
            pair = _U32.unpack_from(buf, p)[0]
            if pair == 0 or p + 4 + pair > end:
                raise m.error(f"inode {ino}: xattr pair of {pair} bytes overruns the xattr table")
            data = buf[p + 4:p + 4 + pair]
            nul = data.find(b"\0")
            if nul <= 0:
                raise m.error(f"inode {ino}: xattr pair without a name")
            out[data[:nul]] = data[nul + 1:]
            p += 4 + pair
        return out

    def _chunk_array(self, ino: int) -> tuple[_Record, int, int]:
        """Return ``(record, chunk array offset, count)`` of a regular file (count 0 otherwise)."""
        off, r = self._inode(ino)
        if not stat.S_ISREG(r[_MODE]):
            return r, 0, 0
        m = self._m
        start, xsize = self._xattr_table(off, r, ino)
        base = start + align8(8 + xsize) - 8 if r[_FLAGS] & V5InodeFlags.XATTR else start
        count = r[_CHILD_COUNT]
        expected = -(-r[_SIZE] // self.chunk_size)
        if count > expected or (count != expected and not r[_FLAGS] & V5InodeFlags.HAS_HOLE):
            raise m.error(f"inode {ino}: {count} chunks for a file of {r[_SIZE]} bytes")
        m.check(base, count * CHUNK_INFO_SIZE, "chunk records of inode {}", ino)
        return r, base, count

    def _chunk(self, ino: int, r: _Record, base: int, k: int) -> ChunkInfo:
        c = ChunkInfo.unpack_from(self._buf, base + k * CHUNK_INFO_SIZE)
        cs, size = self.chunk_size, r[_SIZE]
        if r[_FLAGS] & V5InodeFlags.HAS_HOLE:
            if c.file_offset % cs or c.file_offset + c.uncompressed_size > size:
                raise self._m.error(
                    f"inode {ino} chunk {k}: file offset {c.file_offset} does not fit the file"
                )
        elif c.file_offset != k * cs or c.uncompressed_size != min(cs, size - k * cs):
            raise self._m.error(
                f"inode {ino} chunk {k}: covers {c.file_offset}+{c.uncompressed_size}, expected chunk {k} "
                f"of {size} bytes"
            )
        check_chunk(self._m, c, self.blobs, cs, "inode {} chunk {}", ino, k)
        return c

    def chunks(self, ino: int) -> list[ChunkInfo]:
        """Return the chunk records of regular file ``ino`` in file order (empty for other inodes)."""
        r, base, count = self._chunk_array(ino)
        out = [self._chunk(ino, r, base, k) for k in range(count)]
        for a, b in itertools.pairwise(out):
            if b.file_offset <= a.file_offset:
                raise self._m.error(f"inode {ino}: chunk records are not in file order")
        return out

    def chunks_for_range(self, ino: int, offset: int, size: int) -> list[ChunkInfo]:
        """Return only the chunk records covering file bytes ``[offset, offset + size)``."""
        r, base, count = self._chunk_array(ino)
        if size <= 0 or count == 0:
            return []
        cs = self.chunk_size
        if not r[_FLAGS] & V5InodeFlags.HAS_HOLE:
            first = offset // cs
            last = min(count - 1, (offset + size - 1) // cs)
            return [self._chunk(ino, r, base, k) for k in range(first, last + 1)]
        # Sparse records: binary search on file_offset (records are in file order).
        offsets = _FileOffsets(self._buf, base, count)
        first = max(0, bisect_right(offsets, offset) - 1)
        out = []
        for k in range(first, count):
            c = self._chunk(ino, r, base, k)
            if c.file_offset >= offset + size:
                break
            if c.file_offset + c.uncompressed_size > offset:
                out.append(c)
        return out

    def prefetch_inodes(self) -> list[int]:
        """Return the inode numbers of the prefetch table (up to the first 0)."""
        out = []
        for k in range(self._pf_entries):
            ino = _U32.unpack_from(self._buf, self._pf_off + 4 * k)[0]
            if ino == 0:
                break
            out.append(ino)
        return out

    def close(self) -> None:
        """Unmap the bootstrap."""
        self._buf = b""
        self._m.close()


class _FileOffsets:
    """A read-only sequence view of the ``file_offset`` fields of a chunk record array."""

    __slots__ = ("_base", "_buf", "_count")

    def __init__(self, buf: Buffer, base: int, count: int) -> None:
        self._buf, self._base, self._count = buf, base, count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, k: int) -> int:
        offset: int = _U64.unpack_from(self._buf, self._base + k * CHUNK_INFO_SIZE + 64)[0]
        return offset
