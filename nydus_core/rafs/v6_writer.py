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
from dataclasses import dataclass

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
from .model import BlobInfo, TreeInode

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


@dataclass(eq=False, slots=True)
class _Node:
    inode: TreeInode
    parent: _Node | None
    ftype: int = 0  # mode & S_IFMT
    ino: int = 0
    nid: int = 0
    nlink: int = 0
    subdirs: int = 0
    extended: bool = False
    xattr: bytes = b""
    layout: int = EROFS_INODE_FLAT_PLAIN
    size: int = 0
    data: bytes = b""  # symlink target (dirs are serialized after nids are known)
    names: list[bytes] | None = None  # dirent names, sorted, "." and ".." included
    blocks: list[tuple[int, int]] | None = None
    plain_blocks: int = 0  # whole blocks stored outside the inode
    tail: int = 0  # bytes stored inline after the inode
    data_blkaddr: int = 0  # absolute block of the first plain block
    record: int = 0  # bytes of the inode record (inode + xattrs + tail / chunk indexes)

    @property
    def isize(self) -> int:
        return EROFS_INODE_EXTENDED_SIZE if self.extended else EROFS_INODE_COMPACT_SIZE


class V6Writer:
    """Lay out a tree as a RAFS v6 bootstrap. Build once, then :meth:`dump` (possibly several
    times with blob entries whose ids changed, e.g. an inlined bootstrap's placeholder id).

    ``blobs`` is the blob table (position = blob index; chunk records refer to it); ``compressor``
    and ``digester`` are algorithm ids (§2.1); ``explicit_uid_gid`` is off for ``--repeatable``;
    ``prefetch`` lists inodes of the tree for the prefetch table. With ``keep_mtime`` inodes with a
    non-zero mtime use the extended format so mtimes survive (compact inodes have none);
    ``extended_inodes`` uses the extended format for every inode (as upstream's directory builds).
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
        self._nodes = self._collect(root)
        self._by_id = {id(n.inode): n for n in self._nodes}
        prefetch_nodes: list[_Node] = []
        for inode in prefetch:
            node = self._by_id.get(id(inode))
            if node is None:
                raise BuildError("a prefetch entry is not part of the tree")
            prefetch_nodes.append(node)
        self.has_xattr = False
        self._measure()
        self._meta_len = self._place()
        self._prefetch = list(dict.fromkeys(n.nid for n in prefetch_nodes))
        devtable_end = RAFS_V6_DEVTABLE_OFFSET + V6_DEVICE_SLOT_SIZE * len(self.blobs)
        self._blob_table_offset = align_up(devtable_end, BS)
        self._prefetch_offset = self._blob_table_offset + V6_BLOB_ENTRY_SIZE * len(self.blobs)
        self.meta_addr = align_up(self._prefetch_offset + 4 * len(self._prefetch), BS)
        self._meta = self._serialize_meta()
        self._chunk_table = self._chunk_table_bytes()
        self.chunk_table_offset = align_up(self.meta_addr + len(self._meta), BS)
        self.size = max(align_up(self.chunk_table_offset + len(self._chunk_table), BS), MIN_V6_BOOTSTRAP_SIZE)

    # -- pass 1: order, link counts, sizes ------------------------------------------------------

    def _collect(self, root: TreeInode) -> list[_Node]:
        nodes: list[_Node] = []
        seen: dict[int, _Node] = {}
        root_node = _Node(root, None, _IFDIR, nlink=0)
        stack = [root_node]
        seen[id(root)] = root_node
        while stack:
            dnode = stack.pop()
            nodes.append(dnode)
            names = sorted(dnode.inode.children)
            subdirs: list[_Node] = []
            for name in names:
                child = dnode.inode.children[name]
                if not name or b"/" in name or name in (b".", b".."):
                    raise BuildError(f"invalid file name {name!r}")
                existing = seen.get(id(child))
                ftype = child.mode & _IFMT
                if ftype == _IFDIR:
                    if existing is not None:
                        raise BuildError(f"directory {name!r} appears twice in the tree (cycle or hard link)")
                    node = _Node(child, dnode, ftype)
                    seen[id(child)] = node
                    subdirs.append(node)
                    dnode.subdirs += 1
                elif existing is None:
                    node = _Node(child, dnode, ftype, nlink=1)
                    seen[id(child)] = node
                    nodes.append(node)
                else:
                    existing.nlink += 1
            stack.extend(reversed(subdirs))
        for ino, node in enumerate(nodes, 1):
            node.ino = ino
            if node.ftype == _IFDIR:
                node.nlink = 2 + node.subdirs
        return nodes

    def _needs_extended(self, node: _Node) -> bool:
        i = node.inode
        return bool(
            self.extended_inodes
            or (self.keep_mtime and (i.mtime != 0 or i.mtime_nsec != 0))
            or node.ftype in (stat.S_IFCHR, stat.S_IFBLK)
            or i.uid > _U16 or i.gid > _U16 or node.nlink > _U16 or node.size > _U32
        )

    def _measure(self) -> None:
        for node in self._nodes:
            i = node.inode
            ftype = node.ftype
            if i.uid > _U32 or i.gid > _U32 or node.nlink > _U32:
                raise BuildError("uid/gid/nlink beyond 32 bits cannot be stored")
            if i.xattrs:
                node.xattr = encode_xattrs(i.xattrs)
                self.has_xattr = True
            if ftype == _IFDIR:
                node.names = sorted([b".", b"..", *i.children])
                node.blocks, node.size = _dirent_blocks(node.names)
            elif ftype == _IFLNK:
                target = i.symlink or b""
                if not 0 < len(target) <= _MAX_SYMLINK:
                    raise BuildError(f"symlink target of {len(target)} bytes cannot be stored (1..4096)")
                node.data = target
                node.size = len(target)
            elif ftype == _IFREG:
                node.size = i.size
                self._check_chunks(i)
            node.extended = self._needs_extended(node)
            head = node.isize + len(node.xattr)
            if ftype in (_IFDIR, _IFLNK):
                tail = node.size % BS
                if tail and head + tail <= BS:
                    node.layout = EROFS_INODE_FLAT_INLINE
                    node.tail = tail
                    node.plain_blocks = node.size // BS
                else:
                    node.layout = EROFS_INODE_FLAT_PLAIN
                    node.plain_blocks = -(-node.size // BS)
                node.record = head + node.tail
            elif ftype == _IFREG:
                node.layout = EROFS_INODE_CHUNK_BASED
                node.record = align_up(head, 8) + 8 * len(i.chunks)
            else:
                node.record = head

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

    # -- pass 2: placement --------------------------------------------------------------------

    def _place(self) -> int:
        """Give every inode its nid; return the length of the meta area (relative offsets)."""
        offset = ROOT_OFFSET
        for node in self._nodes:
            head = node.record
            if node.ftype == _IFREG:
                head = align_up(node.isize + len(node.xattr), 8)
            if head <= BS and (offset % BS) + head > BS:
                offset = align_up(offset, BS)
            node.nid = offset // 32
            offset = align_up(offset + node.record, 32)
        offset = align_up(offset, BS)
        for node in self._nodes:
            if node.plain_blocks:
                node.data_blkaddr = offset // BS  # relative; made absolute when serializing
                offset += node.plain_blocks * BS
        return offset

    # -- pass 3: bytes ------------------------------------------------------------------------

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

    def _serialize_meta(self) -> bytearray:
        meta_blk = self.meta_addr // BS
        buf = bytearray(self._meta_len)
        for node in self._nodes:
            i = node.inode
            ftype = node.ftype
            off = node.nid * 32
            if node.plain_blocks:
                node.data_blkaddr += meta_blk
            if ftype in (_IFDIR, _IFLNK):
                # all-inline data: upstream records the block holding the inode and its tail
                iu = node.data_blkaddr if node.plain_blocks else (self.meta_addr + off) // BS
            elif ftype == _IFREG:
                iu = self._chunk_format(i)
            elif ftype in (stat.S_IFCHR, stat.S_IFBLK):
                iu = encode_rdev(i.rdev)
            else:
                iu = 0
            fmt = (1 if node.extended else 0) | (node.layout << 1)
            icount = (len(node.xattr) - 12) // 4 + 1 if node.xattr else 0
            mode = i.mode & _U16
            if node.extended:
                _EXTENDED.pack_into(
                    buf, off, fmt, icount, mode, 0, node.size, iu, node.ino, i.uid, i.gid,
                    max(i.mtime, 0) if self.keep_mtime else 0,
                    i.mtime_nsec if self.keep_mtime and i.mtime >= 0 else 0, node.nlink,
                )
            else:
                _COMPACT.pack_into(buf, off, fmt, icount, mode, node.nlink, node.size, 0, iu, node.ino,
                                   i.uid, i.gid, 0)
            pos = off + node.isize
            if node.xattr:
                buf[pos : pos + len(node.xattr)] = node.xattr
                pos += len(node.xattr)
            if ftype == _IFDIR:
                data = self._dir_data(node)
            elif ftype == _IFLNK:
                data = node.data
            else:
                data = b""
            if node.tail:
                buf[pos : pos + node.tail] = data[node.plain_blocks * BS :]
            if node.plain_blocks:
                start = (node.data_blkaddr - meta_blk) * BS
                plain = data[: node.plain_blocks * BS]
                buf[start : start + len(plain)] = plain
            if ftype == _IFREG and i.chunks:
                pos = align_up(pos, 8)
                for c in i.chunks:
                    ci = c.index
                    _CHUNK_INDEX.pack_into(buf, pos, ci & _U16, ((ci >> 16) & 0xFF) << 8 | (c.blob_index + 1),
                                           c.uncompressed_offset // BS)
                    pos += 8
        return buf

    def _dir_data(self, node: _Node) -> bytes:
        assert node.names is not None and node.blocks is not None
        children = node.inode.children
        parent = node.parent or node
        by_id = self._by_id
        pack = _DIRENT.pack
        out = bytearray()
        for start, end in node.blocks:
            block = bytearray()
            nameoff = 12 * (end - start)
            names = node.names[start:end]
            for name in names:
                if name == b".":
                    nid, ft = node.nid, EROFS_FT_DIR
                elif name == b"..":
                    nid, ft = parent.nid, EROFS_FT_DIR
                else:
                    child = children[name]
                    nid, ft = by_id[id(child)].nid, _FILE_TYPES.get(child.mode & _IFMT, EROFS_FT_UNKNOWN)
                block += pack(nid, nameoff, ft)
                nameoff += len(name)
            for name in names:
                block += name
            if end != len(node.names):
                block += bytes(BS - len(block))
            out += block
        assert len(out) == node.size
        return bytes(out)

    def _chunk_table_bytes(self) -> bytes:
        table: dict[tuple[bytes, int, int, int], bytes] = {}
        cs = self.chunk_size
        for node in self._nodes:
            for k, c in enumerate(node.inode.chunks):
                key = (c.block_id, c.blob_index + 1, c.index, c.uncompressed_offset)
                if key not in table:
                    table[key] = _CHUNK.pack(
                        c.block_id, c.blob_index, c.flags, c.compressed_size, c.uncompressed_size,
                        c.compressed_offset, c.uncompressed_offset, k * cs, c.index, c.crc32,
                    )
        return b"".join(table[k] for k in sorted(table))

    # -- output -------------------------------------------------------------------------------

    @property
    def inode_count(self) -> int:
        """Number of distinct inodes written."""
        return len(self._nodes)

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
            EROFS_MAGIC, 0, EROFS_FEATURE_COMPAT_RAFS_V6, EROFS_BLKSZBITS, 0, self._nodes[0].nid,
            len(self._nodes), 0, 0, total_blocks, self.meta_addr // BS, 0, b"", b"",
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
