"""Write a RAFS v6 (EROFS-compatible) bootstrap from a :class:`TreeInode` tree (rafs-format.md §5, §11).

File layout::

    zeros(1024) | EROFS sb @1024 | ext sb @1152 | device slots @1408 | pad
    blob table (4 KiB aligned) | prefetch table (nids) | pad
    meta area: spare block, inodes (+ inline xattrs, inline tails, chunk indexes), dirent/symlink blocks
    pad | chunk table (80-byte records sorted by (digest, blob_index + 1)) | pad to 4 KiB (>= 8192)

Inodes are placed depth-first over directories (a directory, then its non-directory children in
name order), 32-byte aligned, never letting an inode with its inline data cross a 4 KiB block; full
dirent/symlink blocks follow all inodes. The root nid is 128. Output is a pure function of the
input: the same tree and blobs give the same bytes.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Sequence

from ..errors import BuildError
from .constants import (
    COMPRESSION_FLAG_ORDER,
    COMPRESSION_FLAGS_MASK,
    DIGEST_FLAG_ORDER,
    DIGEST_FLAGS_MASK,
    EROFS_BLKSZBITS,
    EROFS_BLOCK_SIZE,
    EROFS_CHUNK_FORMAT_INDEXES,
    EROFS_FEATURE_COMPAT_RAFS_V6,
    EROFS_FEATURE_INCOMPAT_CHUNKED_FILE,
    EROFS_FEATURE_INCOMPAT_DEVICE_TABLE,
    EROFS_FT_BLKDEV,
    EROFS_FT_CHRDEV,
    EROFS_FT_DIR,
    EROFS_FT_FIFO,
    EROFS_FT_REG_FILE,
    EROFS_FT_SOCK,
    EROFS_FT_SYMLINK,
    EROFS_FT_UNKNOWN,
    EROFS_INODE_CHUNK_BASED,
    EROFS_INODE_COMPACT_SIZE,
    EROFS_INODE_EXTENDED_SIZE,
    EROFS_INODE_FLAT_INLINE,
    EROFS_INODE_FLAT_PLAIN,
    EROFS_MAGIC,
    EROFS_SUPER_OFFSET,
    EROFS_XATTR_PREFIXES,
    MIN_V6_BOOTSTRAP_SIZE,
    RAFS_V6_DEVT_SLOTOFF,
    RAFS_V6_DEVTABLE_OFFSET,
    RAFS_V6_EXT_SUPER_OFFSET,
    V6_BLOB_ENTRY_SIZE,
    V6_DEVICE_SLOT_SIZE,
    BlobFeatures,
    SuperFlags,
    align_up,
    valid_chunk_size,
)
from .model import BlobInfo, ChunkInfo, TreeInode

__all__ = ["V6Writer", "encode_rdev"]

_SB = struct.Struct("<IIIBBHQQIIII16s16sIHHH38s")
_EXT_SB = struct.Struct("<QQIIQQQII200s")
_DEVSLOT = struct.Struct("<64sII56s")
_BLOB = struct.Struct("<64sIIIIIIQQIIQQQ32s32sQ8sI36s")
_COMPACT = struct.Struct("<HHHHIIIIHHI")
_EXTENDED = struct.Struct("<HHHHQIIIIQIIxxxxxxxxxxxxxxxx")
_DIRENT = struct.Struct("<QHBx")
_CHUNK_INDEX = struct.Struct("<HHI")
_CHUNK = struct.Struct("<32sIIIIQQQII")
_XATTR_ENTRY = struct.Struct("<BBH")
_TABLE_KEY_TAIL = struct.Struct(">HIQ")
assert _SB.size == 128 and _EXT_SB.size == 256 and _DEVSLOT.size == 128 and _BLOB.size == 256
assert _COMPACT.size == 32 and _EXTENDED.size == 64 and _DIRENT.size == 12

BS = EROFS_BLOCK_SIZE
ROOT_OFFSET = BS  # one spare block keeps the root nid (128) non-zero
MAX_BLOBS = 255  # the chunk index stores blob_index + 1 in one byte
MAPPED_BLKADDR_ALIGN = 512 * 1024
_U16 = 0xFFFF
_U32 = 0xFFFF_FFFF
_MAX_SYMLINK = 4096
_IFMT, _IFDIR, _IFREG, _IFLNK = stat.S_IFMT(0o177777), stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK


def encode_rdev(rdev: int) -> int:
    """Encode a Linux ``st_rdev`` as EROFS stores it (the kernel's ``new_encode_dev``, 32 bits)."""
    major, minor = os.major(rdev), os.minor(rdev)
    return ((minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)) & _U32


_FILE_TYPES = {
    stat.S_IFREG: EROFS_FT_REG_FILE,
    stat.S_IFDIR: EROFS_FT_DIR,
    stat.S_IFCHR: EROFS_FT_CHRDEV,
    stat.S_IFBLK: EROFS_FT_BLKDEV,
    stat.S_IFIFO: EROFS_FT_FIFO,
    stat.S_IFSOCK: EROFS_FT_SOCK,
    stat.S_IFLNK: EROFS_FT_SYMLINK,
}


def _file_type(mode: int) -> int:
    return _FILE_TYPES.get(stat.S_IFMT(mode), EROFS_FT_UNKNOWN)


def _split_xattr_name(name: bytes) -> tuple[int, bytes]:
    for index, prefix in EROFS_XATTR_PREFIXES.items():
        if name.startswith(prefix):
            return index, name[len(prefix):]
    raise BuildError(f"xattr {name!r} has a prefix RAFS cannot store")


def encode_xattrs(xattrs: dict[bytes, bytes]) -> bytes:
    """Return the inline xattr area (12-byte ibody header + entries), or b"" without xattrs."""
    if not xattrs:
        return b""
    parts = [bytes(12)]
    for name in sorted(xattrs):
        value = xattrs[name]
        index, suffix = _split_xattr_name(name)
        if len(suffix) > 255 or len(value) > _U16:
            raise BuildError(f"xattr {name!r} is too long (name ≤ 255 after the prefix, value ≤ 65535)")
        entry = _XATTR_ENTRY.pack(len(suffix), index, len(value)) + suffix + value
        parts.append(entry + bytes(-len(entry) % 4))
    area = b"".join(parts)
    if (len(area) - 12) // 4 + 1 > _U16:
        raise BuildError("xattrs of one inode exceed the EROFS inline xattr limit")
    return area


def _dirent_blocks(names: Sequence[bytes]) -> tuple[list[tuple[int, int]], int]:
    """Split sorted dirent names into 4 KiB blocks; return index ranges per block and ``i_size``."""
    blocks: list[tuple[int, int]] = []
    start, used = 0, 0
    for i, name in enumerate(names):
        need = 12 + len(name)
        if used + need > BS:
            blocks.append((start, i))
            start, used = i, 0
        used += need
    blocks.append((start, len(names)))
    return blocks, (len(blocks) - 1) * BS + used


class _Dir:
    """A directory or symlink whose bytes are written once every nid is known (internal)."""

    __slots__ = ("blkaddr", "blocks", "extended", "layout", "names", "ordinal", "parent", "plain_blocks",
                 "size", "tail", "xattr")

    def __init__(self, ordinal: int, parent: int, names: list[bytes] | None) -> None:
        self.ordinal, self.parent, self.names = ordinal, parent, names
        self.blocks: list[tuple[int, int]] = []
        self.extended = False
        self.layout = EROFS_INODE_FLAT_PLAIN
        self.plain_blocks = self.size = self.tail = self.blkaddr = 0
        self.xattr = b""


class V6Writer:
    """Lay out a tree as a RAFS v6 bootstrap. Build once, then :meth:`dump` (possibly several
    times with blob entries whose ids changed, e.g. an inlined bootstrap's placeholder id).

    ``blobs`` is the blob table (position = blob index; chunk records refer to it); ``compressor``
    and ``digester`` are algorithm ids (§2.1); ``explicit_uid_gid`` is off for ``--repeatable``;
    ``prefetch`` lists inodes of the tree for the prefetch table. With ``keep_mtime`` inodes with a
    non-zero mtime use the extended format so mtimes survive (compact inodes have none);
    ``extended_inodes`` uses the extended format for every inode (as upstream's directory builds).

    Two passes over flat per-inode lists (no object per inode): the tree walk gives the inode order
    and link counts; then every inode is measured, placed and -- all but directories and symlinks,
    which wait for every nid -- packed into the meta area at once, its chunk records gathered for
    the chunk table.
    """

    def __init__(
        self,
        root: TreeInode,
        blobs: Sequence[BlobInfo],
        *,
        chunk_size: int,
        compressor: int,
        digester: int,
        explicit_uid_gid: bool = True,
        prefetch: Sequence[TreeInode] = (),
        keep_mtime: bool = True,
        extended_inodes: bool = False,
    ) -> None:
        if not valid_chunk_size(chunk_size):
            raise BuildError(f"invalid chunk size {chunk_size:#x}")
        if not root.is_dir:
            raise BuildError("the root of a RAFS tree must be a directory")
        if len(blobs) > MAX_BLOBS:
            raise BuildError(
                f"RAFS v6 images reference at most {MAX_BLOBS} blobs, this one needs {len(blobs)}"
            )
        self.chunk_size = chunk_size
        self.chunk_bits = chunk_size.bit_length() - 1
        self.blobs = list(blobs)
        self.compressor = compressor
        self.digester = digester
        self.explicit_uid_gid = explicit_uid_gid
        self.keep_mtime = keep_mtime
        self.extended_inodes = extended_inodes
        self.has_xattr = False
        self._collect(root)
        prefetch_ords: list[int] = []
        for inode in prefetch:
            ordinal = self._index.get(id(inode))
            if ordinal is None:
                raise BuildError("a prefetch entry is not part of the tree")
            prefetch_ords.append(ordinal)
        prefetch_ords = list(dict.fromkeys(prefetch_ords))  # one nid per inode
        devtable_end = RAFS_V6_DEVTABLE_OFFSET + V6_DEVICE_SLOT_SIZE * len(self.blobs)
        self._blob_table_offset = align_up(devtable_end, BS)
        self._prefetch_offset = self._blob_table_offset + V6_BLOB_ENTRY_SIZE * len(self.blobs)
        self.meta_addr = align_up(self._prefetch_offset + 4 * len(prefetch_ords), BS)
        self._meta, self._chunk_table = self._write_meta()
        self._prefetch = [self._nids[k] for k in prefetch_ords]
        self.chunk_table_offset = align_up(self.meta_addr + len(self._meta), BS)
        self.size = max(align_up(self.chunk_table_offset + len(self._chunk_table), BS), MIN_V6_BOOTSTRAP_SIZE)

    # -- pass 1: order and link counts --------------------------------------------------------

    def _collect(self, root: TreeInode) -> None:
        """Inode order (a directory, its non-directories by name, then its subdirectories), link
        counts, and each directory's sorted names and parent."""
        order: list[TreeInode] = []
        nlink: list[int] = []
        index: dict[int, int] = {}
        dirs: dict[int, _Dir] = {}
        stack: list[tuple[TreeInode, int]] = [(root, 0)]
        index_get = index.get
        while stack:
            dinode, parent = stack.pop()
            ordinal = len(order)
            index[id(dinode)] = ordinal
            order.append(dinode)
            nlink.append(2)
            children = dinode.children
            names = sorted(children)
            subdirs: list[tuple[TreeInode, int]] = []
            for name in names:
                child = children[name]
                if not name or b"/" in name or name in (b".", b".."):
                    raise BuildError(f"invalid file name {name!r}")
                existing = index_get(id(child))
                if child.mode & _IFMT == _IFDIR:
                    if existing is not None:
                        raise BuildError(f"directory {name!r} appears twice in the tree (cycle or hard link)")
                    index[id(child)] = -1  # numbered when popped; a second name for it is an error
                    subdirs.append((child, ordinal))
                elif existing is None:
                    index[id(child)] = len(order)
                    order.append(child)
                    nlink.append(1)
                else:
                    nlink[existing] += 1
            nlink[ordinal] = 2 + len(subdirs)
            dirs[ordinal] = _Dir(ordinal, parent, names)
            stack.extend(reversed(subdirs))
        self._order, self._nlink, self._index, self._dirs = order, nlink, index, dirs

    # -- pass 2: measure, place, pack ---------------------------------------------------------

    def _needs_extended(self, inode: TreeInode, ftype: int, nlink: int, size: int) -> bool:
        return bool(
            self.extended_inodes
            or (self.keep_mtime and (inode.mtime != 0 or inode.mtime_nsec != 0))
            or ftype in (stat.S_IFCHR, stat.S_IFBLK)
            or inode.uid > _U16 or inode.gid > _U16 or nlink > _U16 or size > _U32
        )

    def _check_chunks(self, inode: TreeInode) -> None:
        cs = self.chunk_size
        expected = -(-inode.size // cs)
        if len(inode.chunks) != expected:
            raise BuildError(
                f"a file of {inode.size} bytes has {len(inode.chunks)} chunks, expected {expected} "
                f"at chunk size {cs:#x}"
            )
        for k, c in enumerate(inode.chunks):
            want = min(cs, inode.size - k * cs)
            if c.uncompressed_size != want:
                raise BuildError(
                    f"chunk {k} of a file has {c.uncompressed_size} bytes, expected {want} "
                    "(chunk size mismatch)"
                )
            if not 0 <= c.blob_index < len(self.blobs):
                raise BuildError(
                    f"chunk refers to blob index {c.blob_index}, the image has {len(self.blobs)} blobs"
                )
            if c.uncompressed_offset % BS:
                raise BuildError(
                    f"chunk of blob {self.blobs[c.blob_index].blob_id} is not 4 KiB aligned in the "
                    "uncompressed blob (RAFS v6 needs aligned blobs)"
                )
            if c.index >= 1 << 24:
                raise BuildError("chunk index beyond 2^24 cannot be stored")

    def _chunk_format(self, inode: TreeInode) -> int:
        chunks = inode.chunks
        bits = self.chunk_bits
        if len(chunks) > 1:
            first = chunks[0]
            if all(
                c.blob_index == first.blob_index
                and c.uncompressed_offset == first.uncompressed_offset + k * self.chunk_size
                for k, c in enumerate(chunks)
            ):
                # contiguous in one blob image: let EROFS map the whole file with one index
                whole = (inode.size - 1).bit_length()
                if whole - EROFS_BLKSZBITS <= 0x1F:
                    bits = max(bits, whole)
        return EROFS_CHUNK_FORMAT_INDEXES | (bits - EROFS_BLKSZBITS)

    def _write_meta(self) -> tuple[bytearray, bytearray]:
        """Give every inode its nid (placed in order, 32-byte aligned, an inode with its inline
        data never crossing a block), pack the inodes; return the meta area and the chunk table."""
        order, nlinks, dirs = self._order, self._nlink, self._dirs
        cs, nblobs, keep_mtime = self.chunk_size, len(self.blobs), self.keep_mtime
        ext_all = self.extended_inodes
        one_chunk_iu = EROFS_CHUNK_FORMAT_INDEXES | (self.chunk_bits - EROFS_BLKSZBITS)
        chunk_based = (EROFS_INODE_CHUNK_BASED << 1, 1 | (EROFS_INODE_CHUNK_BASED << 1))
        pack_ext, pack_compact, pack_index = _EXTENDED.pack_into, _COMPACT.pack_into, _CHUNK_INDEX.pack_into
        nids = [0] * len(order)
        # chunk table: first record of each (digest, blob index + 1, chunk index, offset), in that
        # order; the key as one bytes (32-byte digest, then big-endian numbers) sorts the same, faster
        table: dict[bytes, tuple[ChunkInfo, int]] = {}
        key_tail = _TABLE_KEY_TAIL.pack
        buf = bytearray(max(BS * 4, 128 * len(order)))
        deferred: list[_Dir] = []
        offset = ROOT_OFFSET
        ext_tag, compact_tag = chunk_based[1], chunk_based[0]
        for ordinal, inode in enumerate(order):
            mode = inode.mode
            ftype = mode & _IFMT
            nlink = nlinks[ordinal]
            if ftype == _IFREG and not inode.xattrs:
                # most inodes of an image: a one-chunk file without xattrs, in range (anything else,
                # or any problem, takes the general path below, which raises the errors)
                chunks = inode.chunks
                size = inode.size
                uid, gid = inode.uid, inode.gid
                if len(chunks) == 1 and 0 < size <= cs and uid <= _U32 and gid <= _U32 and nlink <= _U32:
                    c = chunks[0]
                    ci, bi, uoff = c.index, c.blob_index, c.uncompressed_offset
                    block_id = c.block_id
                    if (c.uncompressed_size == size and 0 <= bi < nblobs and not uoff % BS and ci < 1 << 24
                            and len(block_id) == 32):
                        mtime = inode.mtime
                        if (ext_all or (keep_mtime and (mtime != 0 or inode.mtime_nsec != 0))
                                or uid > _U16 or gid > _U16 or nlink > _U16 or size > _U32):
                            if (offset & (BS - 1)) + EROFS_INODE_EXTENDED_SIZE > BS:
                                offset = (offset + BS - 1) & ~(BS - 1)
                            off = offset
                            offset = off + ((EROFS_INODE_EXTENDED_SIZE + 8 + 31) & ~31)
                            if offset > len(buf):
                                buf.extend(bytes(len(buf)))
                            pack_ext(buf, off, ext_tag, 0, mode & _U16, 0, size, one_chunk_iu, ordinal + 1,
                                     uid, gid, max(mtime, 0) if keep_mtime else 0,
                                     inode.mtime_nsec if keep_mtime and mtime >= 0 else 0, nlink)
                            pack_index(buf, off + EROFS_INODE_EXTENDED_SIZE, ci & _U16,
                                       ((ci >> 16) & 0xFF) << 8 | (bi + 1), uoff // BS)
                        else:
                            if (offset & (BS - 1)) + EROFS_INODE_COMPACT_SIZE > BS:
                                offset = (offset + BS - 1) & ~(BS - 1)
                            off = offset
                            offset = off + ((EROFS_INODE_COMPACT_SIZE + 8 + 31) & ~31)
                            if offset > len(buf):
                                buf.extend(bytes(len(buf)))
                            pack_compact(buf, off, compact_tag, 0, mode & _U16, nlink, size, 0, one_chunk_iu,
                                         ordinal + 1, uid, gid, 0)
                            pack_index(buf, off + EROFS_INODE_COMPACT_SIZE, ci & _U16,
                                       ((ci >> 16) & 0xFF) << 8 | (bi + 1), uoff // BS)
                        nids[ordinal] = off >> 5
                        key = block_id + key_tail(bi + 1, ci, uoff)
                        if key not in table:
                            table[key] = (c, 0)
                        continue
            uid, gid = inode.uid, inode.gid
            if uid > _U32 or gid > _U32 or nlink > _U32:
                raise BuildError("uid/gid/nlink beyond 32 bits cannot be stored")
            xattr = b""
            if inode.xattrs:
                xattr = encode_xattrs(inode.xattrs)
                self.has_xattr = True
            if ftype == _IFREG:
                size = inode.size
                chunks = inode.chunks
                nchunks = len(chunks)
                if nchunks == 1 and 0 < size <= cs:  # most files: the checks of _check_chunks inline
                    c = chunks[0]
                    if (c.uncompressed_size != size or not 0 <= c.blob_index < nblobs
                            or c.uncompressed_offset % BS or c.index >= 1 << 24):
                        self._check_chunks(inode)
                    iu = one_chunk_iu
                else:
                    self._check_chunks(inode)
                    iu = self._chunk_format(inode)
                extended = (ext_all or (keep_mtime and (inode.mtime != 0 or inode.mtime_nsec != 0))
                            or uid > _U16 or gid > _U16 or nlink > _U16 or size > _U32)
                isize = EROFS_INODE_EXTENDED_SIZE if extended else EROFS_INODE_COMPACT_SIZE
                head = (isize + len(xattr) + 7) & ~7
                record = head + 8 * nchunks
                span = head  # the inode and its xattrs stay in one block; the chunk indexes may cross
            elif ftype in (_IFDIR, _IFLNK):
                if ftype == _IFDIR:
                    d = dirs[ordinal]
                    assert d.names is not None
                    d.names = sorted([b".", b"..", *d.names])
                    d.blocks, size = _dirent_blocks(d.names)
                else:
                    target = inode.symlink or b""
                    if not 0 < len(target) <= _MAX_SYMLINK:
                        raise BuildError(f"symlink target of {len(target)} bytes cannot be stored (1..4096)")
                    d = _Dir(ordinal, 0, None)
                    size = len(target)
                d.size, d.xattr = size, xattr
                d.extended = self._needs_extended(inode, ftype, nlink, size)
                head = (EROFS_INODE_EXTENDED_SIZE if d.extended else EROFS_INODE_COMPACT_SIZE) + len(xattr)
                tail = size % BS
                if tail and head + tail <= BS:
                    d.layout, d.tail, d.plain_blocks = EROFS_INODE_FLAT_INLINE, tail, size // BS
                else:
                    d.plain_blocks = -(-size // BS)
                record = span = head + d.tail
                deferred.append(d)
            else:  # devices, fifos, sockets: attributes only
                extended = self._needs_extended(inode, ftype, nlink, 0)
                isize = EROFS_INODE_EXTENDED_SIZE if extended else EROFS_INODE_COMPACT_SIZE
                record = span = isize + len(xattr)
            if span <= BS and (offset & (BS - 1)) + span > BS:
                offset = (offset + BS - 1) & ~(BS - 1)
            off = offset
            nids[ordinal] = off >> 5
            offset = (off + record + 31) & ~31
            if offset > len(buf):
                buf.extend(bytes(max(len(buf), offset - len(buf))))
            if ftype == _IFREG:
                icount = (len(xattr) - 12) // 4 + 1 if xattr else 0
                if extended:
                    mtime = inode.mtime
                    pack_ext(buf, off, chunk_based[1], icount, mode & _U16, 0, size, iu, ordinal + 1, uid,
                             gid, max(mtime, 0) if keep_mtime else 0,
                             inode.mtime_nsec if keep_mtime and mtime >= 0 else 0, nlink)
                else:
                    pack_compact(buf, off, chunk_based[0], icount, mode & _U16, nlink, size, 0, iu,
                                 ordinal + 1, uid, gid, 0)
                pos = off + isize
                if xattr:
                    buf[pos:pos + len(xattr)] = xattr
                pos = off + head
                for k, c in enumerate(chunks):
                    ci, bi, uoff = c.index, c.blob_index, c.uncompressed_offset
                    pack_index(buf, pos, ci & _U16, ((ci >> 16) & 0xFF) << 8 | (bi + 1), uoff // BS)
                    pos += 8
                    if len(c.block_id) != 32:
                        raise BuildError(f"a chunk digest of {len(c.block_id)} bytes cannot be stored (32)")
                    key = c.block_id + key_tail(bi + 1, ci, uoff)
                    if key not in table:
                        table[key] = (c, k)
            elif ftype not in (_IFDIR, _IFLNK):
                iu = encode_rdev(inode.rdev) if ftype in (stat.S_IFCHR, stat.S_IFBLK) else 0
                self._pack_inode(buf, off, inode, ordinal, extended, EROFS_INODE_FLAT_PLAIN, xattr, 0, iu)
        offset = align_up(offset, BS)
        for d in deferred:
            if d.plain_blocks:
                d.blkaddr = offset // BS  # relative to the meta area
                offset += d.plain_blocks * BS
        meta_len = offset
        if len(buf) < meta_len:
            buf.extend(bytes(meta_len - len(buf)))
        else:
            del buf[meta_len:]
        self._nids = nids
        meta_blk = self.meta_addr // BS
        for d in deferred:
            inode = order[d.ordinal]
            off = nids[d.ordinal] * 32
            data = self._dir_data(d, inode) if d.names is not None else (inode.symlink or b"")
            # all-inline data: upstream records the block holding the inode and its tail
            iu = d.blkaddr + meta_blk if d.plain_blocks else (self.meta_addr + off) // BS
            pos = self._pack_inode(buf, off, inode, d.ordinal, d.extended, d.layout, d.xattr, d.size, iu)
            if d.tail:
                buf[pos:pos + d.tail] = data[d.plain_blocks * BS:]
            if d.plain_blocks:
                start = d.blkaddr * BS
                plain = data[:d.plain_blocks * BS]
                buf[start:start + len(plain)] = plain
        chunk_table = bytearray(_CHUNK.size * len(table))
        pack_chunk = _CHUNK.pack_into
        pos = 0
        for key in sorted(table):
            c, k = table[key]
            pack_chunk(chunk_table, pos, c.block_id, c.blob_index, c.flags, c.compressed_size,
                       c.uncompressed_size, c.compressed_offset, c.uncompressed_offset, k * cs, c.index,
                       c.crc32)
            pos += _CHUNK.size
        return buf, chunk_table

    def _pack_inode(self, buf: bytearray, off: int, inode: TreeInode, ordinal: int, extended: bool,
                    layout: int, xattr: bytes, size: int, iu: int) -> int:
        """Pack one inode (and its xattrs) at ``off``; return where its inline data starts."""
        fmt = (1 if extended else 0) | (layout << 1)
        icount = (len(xattr) - 12) // 4 + 1 if xattr else 0
        mode = inode.mode & _U16
        nlink = self._nlink[ordinal]
        if extended:
            keep = self.keep_mtime
            _EXTENDED.pack_into(
                buf, off, fmt, icount, mode, 0, size, iu, ordinal + 1, inode.uid, inode.gid,
                max(inode.mtime, 0) if keep else 0, inode.mtime_nsec if keep and inode.mtime >= 0 else 0,
                nlink,
            )
            pos = off + EROFS_INODE_EXTENDED_SIZE
        else:
            _COMPACT.pack_into(buf, off, fmt, icount, mode, nlink, size, 0, iu, ordinal + 1, inode.uid,
                               inode.gid, 0)
            pos = off + EROFS_INODE_COMPACT_SIZE
        if xattr:
            buf[pos:pos + len(xattr)] = xattr
            pos += len(xattr)
        return pos

    def _dir_data(self, d: _Dir, inode: TreeInode) -> bytes:
        assert d.names is not None
        children = inode.children
        nids, index = self._nids, self._index
        pack = _DIRENT.pack
        out = bytearray()
        names = d.names
        for start, end in d.blocks:
            block = bytearray()
            nameoff = 12 * (end - start)
            part = names[start:end]
            for name in part:
                if name == b".":
                    nid, ft = nids[d.ordinal], EROFS_FT_DIR
                elif name == b"..":
                    nid, ft = nids[d.parent], EROFS_FT_DIR
                else:
                    child = children[name]
                    nid, ft = nids[index[id(child)]], _FILE_TYPES.get(child.mode & _IFMT, EROFS_FT_UNKNOWN)
                block += pack(nid, nameoff, ft)
                nameoff += len(name)
            for name in part:
                block += name
            if end != len(names):
                block += bytes(BS - len(block))
            out += block
        assert len(out) == d.size
        return bytes(out)

    # -- output -------------------------------------------------------------------------------

    @property
    def inode_count(self) -> int:
        """Number of distinct inodes written."""
        return len(self._order)

    def flags(self, blobs: Sequence[BlobInfo] | None = None) -> int:
        """Return the extended superblock ``s_flags``."""
        blobs = self.blobs if blobs is None else blobs
        flags = int(SuperFlags.ENCRYPTION_NONE)
        flags |= next((f for f, a in COMPRESSION_FLAG_ORDER if a == self.compressor), 0)
        flags |= next((f for f, a in DIGEST_FLAG_ORDER if a == self.digester), 0)
        if not flags & COMPRESSION_FLAGS_MASK or not flags & DIGEST_FLAGS_MASK:
            raise BuildError(
                f"compressor id {self.compressor} / digester id {self.digester} cannot be recorded"
            )
        if self.explicit_uid_gid:
            flags |= SuperFlags.EXPLICIT_UID_GID
        if self.has_xattr:
            flags |= SuperFlags.HAS_XATTR
        if blobs and all(b.features & BlobFeatures.INLINED_CHUNK_DIGEST for b in blobs):
            flags |= SuperFlags.INLINED_CHUNK_DIGEST
        return flags

    def dump(self, blobs: Sequence[BlobInfo] | None = None) -> bytes:
        """Return the whole bootstrap. ``blobs`` may replace the blob entries given at construction
        (same count and order; only ids, sizes and digests may differ)."""
        blobs = self.blobs if blobs is None else list(blobs)
        if len(blobs) != len(self.blobs):
            raise ValueError("dump() needs as many blobs as the layout was made for")
        out = bytearray(self.size)
        total_blocks = 0
        mapped = align_up(self.size, MAPPED_BLKADDR_ALIGN) // BS
        seen_ids: set[str] = set()
        for idx, b in enumerate(blobs):
            raw_id = b.blob_id.encode("ascii", "replace")
            if not raw_id or len(raw_id) > 64:
                raise BuildError(f"blob id {b.blob_id!r} must be 1..64 characters")
            if b.blob_id in seen_ids:
                raise BuildError(f"blob {b.blob_id} appears twice in the blob table")
            seen_ids.add(b.blob_id)
            if b.chunk_size not in (0, self.chunk_size):
                raise BuildError(
                    f"blob {b.blob_id} has chunk size {b.chunk_size:#x}, the image uses {self.chunk_size:#x}"
                )
            if b.digester != self.digester:
                raise BuildError(f"blob {b.blob_id} uses another digest algorithm than the image")
            if b.uncompressed_size % BS or b.uncompressed_size == 0:
                raise BuildError(f"blob {b.blob_id} has no 4 KiB aligned uncompressed image")
            blocks = b.uncompressed_size // BS
            total_blocks += blocks
            _DEVSLOT.pack_into(out, RAFS_V6_DEVTABLE_OFFSET + idx * V6_DEVICE_SLOT_SIZE, raw_id,
                               blocks & _U32, mapped & _U32, b"")
            mapped = align_up((mapped + blocks) * BS, MAPPED_BLKADDR_ALIGN) // BS
            _BLOB.pack_into(
                out, self._blob_table_offset + idx * V6_BLOB_ENTRY_SIZE,
                raw_id, idx, self.chunk_size, b.chunk_count, b.compressor, b.digester, b.features & _U32,
                b.compressed_size, b.uncompressed_size, b.blob_toc_size, b.ci_compressor, b.ci_offset,
                b.ci_compressed_size, b.ci_uncompressed_size, b.blob_toc_digest, b.blob_meta_digest,
                b.blob_meta_size, b.cipher_iv, b.cipher_algo, b"",
            )
        if total_blocks > _U32:
            raise BuildError("the blobs are too large for one RAFS v6 image (s_blocks overflows)")
        for k, nid in enumerate(self._prefetch):
            struct.pack_into("<I", out, self._prefetch_offset + 4 * k, nid)
        _SB.pack_into(
            out, EROFS_SUPER_OFFSET,
            EROFS_MAGIC, 0, EROFS_FEATURE_COMPAT_RAFS_V6, EROFS_BLKSZBITS, 0, self._nids[0],
            len(self._order), 0, 0, total_blocks, self.meta_addr // BS, 0, b"", b"",
            EROFS_FEATURE_INCOMPAT_CHUNKED_FILE | EROFS_FEATURE_INCOMPAT_DEVICE_TABLE, 0, len(blobs),
            RAFS_V6_DEVT_SLOTOFF, b"",
        )
        _EXT_SB.pack_into(
            out, RAFS_V6_EXT_SUPER_OFFSET,
            self.flags(blobs), self._blob_table_offset, V6_BLOB_ENTRY_SIZE * len(blobs), self.chunk_size,
            self.chunk_table_offset, len(self._chunk_table),
            self._prefetch_offset if self._prefetch else 0, 4 * len(self._prefetch), 0, b"",
        )
        out[self.meta_addr : self.meta_addr + len(self._meta)] = self._meta
        out[self.chunk_table_offset : self.chunk_table_offset + len(self._chunk_table)] = self._chunk_table
        return bytes(out)
