"""RAFS v6 reader: an EROFS image with Nydus' extended superblock, blob table and chunk table (§5).

Opening checks the superblocks, device slots and blob table (§5.2-5.5, §5.14) and decodes the blob
table; inodes, directories, xattrs and chunk indexes are decoded on access straight from the
mapping. ``ino`` is the EROFS nid, as in nydusd. Chunk index entries are resolved through the
bootstrap chunk table keyed by ``(blob_index, chunk index, block address)``; that index is built on
the first chunk lookup (one small int per chunk-table record), never per inode.

Reporting choices: when EXPLICIT_UID_GID is clear uid/gid are reported as 0 (nydusd reports its own
euid/egid); compact inodes carry no mtime (reported as 0); a device's rdev is ``i_u`` of either
inode form (upstream writers use extended inodes for devices, the kernel reads ``i_u`` of both).
"""

from __future__ import annotations

import bisect
import errno
import itertools
import stat
import struct
from array import array
from collections.abc import Iterator

from ..errors import UnsupportedFeatureError
from .checks import (
    KNOWN_COMPRESSORS,
    KNOWN_DIGESTERS,
    algorithms_from_flags,
    check_blob_supported,
    check_chunk,
    check_super_flags_supported,
    decode_blob_id,
    valid_chunk_records,
)
from .constants import (
    CHUNK_INFO_SIZE,
    COMPRESSION_FLAGS_MASK,
    DIGEST_FLAGS_MASK,
    EROFS_BLKSZBITS,
    EROFS_CHUNK_FORMAT_INDEXES,
    EROFS_FEATURE_COMPAT_RAFS_V6,
    EROFS_FEATURE_INCOMPAT_CHUNKED_FILE,
    EROFS_FEATURE_INCOMPAT_DEVICE_TABLE,
    EROFS_INODE_CHUNK_BASED,
    EROFS_INODE_COMPACT_SIZE,
    EROFS_INODE_EXTENDED_SIZE,
    EROFS_INODE_FLAT_INLINE,
    EROFS_INODE_FLAT_PLAIN,
    EROFS_SUPER_OFFSET,
    EROFS_XATTR_PREFIXES,
    MIN_V6_BOOTSTRAP_SIZE,
    RAFS_V6_DEVT_SLOTOFF,
    RAFS_V6_DEVTABLE_OFFSET,
    RAFS_V6_EXT_SUPER_OFFSET,
    SUPER_FLAGS_ALL,
    V6_BLOB_ENTRY_SIZE,
    V6_DEVICE_SLOT_SIZE,
    BlobFeatures,
    SuperFlags,
    valid_chunk_size,
)
from .image import RafsImage
from .mapped import MappedBootstrap, align8, check_disjoint, check_name
from .model import BlobInfo, ChunkInfo, InodeAttrs

_SB = struct.Struct("<IIIBBHQQIIII16s16sIHHH")
_EXT = struct.Struct("<QQIIQQQII")
_DEV = struct.Struct("<64sII")
_BLOB = struct.Struct("<64sIIIIIIQQIIQQQ32s32sQ8sI")
_COMPACT = struct.Struct("<HHHHIIIIHHI")
_EXTENDED = struct.Struct("<HHHHQIIIIQII16x")
_DIRENT = struct.Struct("<QH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_XATTR_ENTRY = struct.Struct("<BBH")
_CHUNK_INDEX = struct.Struct("<HHI")
# blob_index, uncompressed_offset, index of an 80-byte chunk record.
_CHUNK_KEY = struct.Struct("<32xI20xQ8xI4x")
assert _CHUNK_KEY.size == CHUNK_INFO_SIZE
_NO_KEY = (1 << 64) - 1
_RECENT_INODES = 64  # a record no chunk index can address


class ChunkLookup:
    """Chunk-table position by ``(blob, chunk index, block)`` key: sorted keys in an ``array``
    (8 bytes a chunk; plus 4 for the positions when the table is not already in key order), looked
    up by bisection, instead of a dict of Python ints (~100 bytes a chunk). The first record of a
    key wins, as it did with the dict."""

    __slots__ = ("_keys", "_pos")

    def __init__(self, keys: array[int]) -> None:
        self._keys = keys
        self._pos: array[int] | None = None  # None: the table's own order (our builder's)
        if not all(a <= b for a, b in zip(keys, itertools.islice(keys, 1, None))):
            order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: first record first
            self._keys = array("Q", (keys[i] for i in order))
            self._pos = array("I", order)

    def get(self, key: int) -> int | None:
        """Return the position of the first record with ``key``, or None."""
        keys = self._keys
        i = bisect.bisect_left(keys, key)
        if i == len(keys) or keys[i] != key or key == _NO_KEY:
            return None
        return i if self._pos is None else self._pos[i]

_DIRENT_SIZE = 12
_NAME_LEN = 255  # the kernel's EROFS_NAME_LEN: a longer dirent name is "bogus dirent namelen"
_XATTR_IBODY_HEADER = 12
_FILE_TYPES = frozenset(
    {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK}
)
_DIR_COUNT_CACHE = 64


class _Inode:
    """One decoded on-disk inode (internal; rebuilt on every access, never kept per inode)."""

    __slots__ = ("gid", "i_u", "isize", "layout", "mode", "mtime", "mtime_nsec", "nid", "nlink", "off",
                 "size", "uid", "xattr_size")

    gid: int
    i_u: int
    isize: int
    layout: int
    mode: int
    mtime: int
    mtime_nsec: int
    nid: int
    nlink: int
    off: int
    size: int
    uid: int
    xattr_size: int


class V6Image(RafsImage):
    """A RAFS v6 bootstrap opened for lazy reading (``ino`` = nid)."""

    version = 6

    def __init__(self, mapped: MappedBootstrap) -> None:
        self._m = mapped
        self._buf = mapped.buf
        self.path = mapped.path
        self._chunk_map_cache: ChunkLookup | None = None
        self._valid_records: bytearray | None = None  # chunk_bytes(): records check_chunk passes
        self._recent: dict[int, _Inode] = {}  # the last few decoded inodes (a walk's repeats)
        self._dir_counts: dict[int, list[int]] = {}
        self._load()

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        m, buf = self._m, self._buf
        if m.size < MIN_V6_BOOTSTRAP_SIZE:
            raise m.error(f"too small for a RAFS v6 bootstrap ({m.size} bytes, at least 8192)")
        (_magic, checksum, compat, blkszbits, extslots, root_nid, inos, _bt, _btn, blocks, meta_blkaddr,
         xattr_blkaddr, _uuid, _vol, incompat, s_u, extra_devices, devt_slotoff) = _SB.unpack_from(
            buf, EROFS_SUPER_OFFSET)
        (flags, bt_off, bt_size, chunk_size, ct_off, ct_size, pf_off, pf_size, _pad) = _EXT.unpack_from(
            buf, RAFS_V6_EXT_SUPER_OFFSET)
        check_super_flags_supported(m, flags)
        if checksum:
            raise m.error("superblock checksum is set (RAFS v6 requires 0)")
        if not compat & EROFS_FEATURE_COMPAT_RAFS_V6:
            raise m.error("EROFS superblock lacks the RAFS v6 compat feature")
        if blkszbits != EROFS_BLKSZBITS:
            raise m.error(f"unsupported EROFS block size bits {blkszbits} (expected 12)")
        if incompat != EROFS_FEATURE_INCOMPAT_CHUNKED_FILE | EROFS_FEATURE_INCOMPAT_DEVICE_TABLE:
            raise m.error(f"unsupported EROFS incompat features {incompat:#x} (expected 0xc)")
        if extslots or s_u or xattr_blkaddr:
            raise m.error("EROFS superblock has extra slots, compression or shared xattrs (not RAFS v6)")
        if inos == 0:
            raise m.error("superblock records 0 inodes")
        if devt_slotoff * 128 != RAFS_V6_DEVTABLE_OFFSET:
            raise m.error(f"device table slot offset {devt_slotoff} (expected {RAFS_V6_DEVT_SLOTOFF})")
        if extra_devices == 0 and blocks not in (0, 4096):
            raise m.error(f"superblock records {blocks} blocks but no blob devices")
        bs = 1 << blkszbits
        if m.size % bs:
            raise m.error(f"size {m.size} is not a multiple of the block size {bs}")
        meta = meta_blkaddr * bs
        if meta + EROFS_INODE_COMPACT_SIZE > m.size:
            raise m.error(f"meta block address {meta_blkaddr} lies outside the file")
        if flags & ~SUPER_FLAGS_ALL:
            raise m.error(f"unknown superblock flags {flags & ~SUPER_FLAGS_ALL:#x}")
        if (flags & COMPRESSION_FLAGS_MASK).bit_count() != 1:
            raise m.error(f"superblock flags {flags:#x} do not name exactly one compressor")
        if (flags & DIGEST_FLAGS_MASK).bit_count() != 1:
            raise m.error(f"superblock flags {flags:#x} do not name exactly one digest algorithm")
        if not valid_chunk_size(chunk_size):
            raise m.error(f"invalid chunk size {chunk_size:#x} (power of two in 0x1000..0x1000000)")
        if bt_size:
            if bt_off % 4096 or bt_off < 4096 or bt_size % V6_BLOB_ENTRY_SIZE:
                raise m.error(f"blob table at {bt_off} (size {bt_size}) is misaligned")
            m.check(bt_off, bt_size, "blob table")
        if ct_size:
            if ct_off % 4096 or ct_size % CHUNK_INFO_SIZE:
                raise m.error(f"chunk table at {ct_off} (size {ct_size}) is misaligned")
            m.check(ct_off, ct_size, "chunk table")
        if pf_size:
            if pf_size % 4:
                raise m.error(f"prefetch table size {pf_size} is not a multiple of 4")
            m.check(pf_off, pf_size, "prefetch table")
        m.check(RAFS_V6_DEVTABLE_OFFSET, extra_devices * V6_DEVICE_SLOT_SIZE, "device table")
        check_disjoint(m, [
            ("superblocks", 0, RAFS_V6_DEVTABLE_OFFSET),
            ("device table", RAFS_V6_DEVTABLE_OFFSET, extra_devices * V6_DEVICE_SLOT_SIZE),
            ("blob table", bt_off, bt_size),
            ("prefetch table", pf_off, pf_size),
            ("chunk table", ct_off, ct_size),
        ])
        nblobs = bt_size // V6_BLOB_ENTRY_SIZE
        if nblobs != extra_devices:
            raise m.error(
                f"blob table has {nblobs} entries but the superblock records {extra_devices} devices"
            )

        self.flags = flags
        self.chunk_size = chunk_size
        self.compressor, self.digester = algorithms_from_flags(flags)
        self.explicit_uid_gid = bool(flags & SuperFlags.EXPLICIT_UID_GID)
        self.block_size = bs
        self._bits = blkszbits
        self._meta = meta
        self._max_nid = (m.size - meta - EROFS_INODE_COMPACT_SIZE) // 32
        self._inos: int = inos
        self._ct_off, self._ct_size = ct_off, ct_size
        self._pf_off, self._pf_size = pf_off, pf_size
        self._check_devices(extra_devices)
        self.blobs: list[BlobInfo] = [
            self._load_blob(bt_off + i * V6_BLOB_ENTRY_SIZE, i) for i in range(nblobs)
        ]
        self.root_ino = root_nid
        root = self._inode(root_nid)
        if not stat.S_ISDIR(root.mode):
            raise m.error(f"root inode (nid {root_nid}) is not a directory")

    def _check_devices(self, count: int) -> None:
        m, seen = self._m, set()
        for i in range(count):
            off = RAFS_V6_DEVTABLE_OFFSET + i * V6_DEVICE_SLOT_SIZE
            raw, blocks, _mapped = _DEV.unpack_from(self._buf, off)
            if any(c <= 0x20 or c >= 0x7F for c in raw):
                raise m.error(f"device slot {i}: blob id is not 64 printable characters")
            if blocks == 0:
                raise m.error(f"device slot {i}: blob {raw.decode()} has 0 blocks")
            if raw in seen:
                raise m.error(f"device slot {i}: duplicate blob id {raw.decode()}")
            seen.add(raw)

    def _load_blob(self, off: int, position: int) -> BlobInfo:
        m = self._m
        (raw_id, blob_index, chunk_size, chunk_count, compressor, digester, features, compressed_size,
         uncompressed_size, toc_size, ci_compressor, ci_offset, ci_csize, ci_usize, toc_digest,
         meta_digest, meta_size, cipher_iv, cipher_algo) = _BLOB.unpack_from(self._buf, off)
        where = f"blob table entry {position}"
        blob = BlobInfo(
            blob_id=decode_blob_id(m, raw_id, where), blob_index=blob_index, chunk_size=chunk_size,
            chunk_count=chunk_count, compressor=compressor, digester=digester, features=features,
            compressed_size=compressed_size, uncompressed_size=uncompressed_size, blob_toc_size=toc_size,
            ci_compressor=ci_compressor, ci_offset=ci_offset, ci_compressed_size=ci_csize,
            ci_uncompressed_size=ci_usize, blob_toc_digest=toc_digest, blob_meta_digest=meta_digest,
            blob_meta_size=meta_size, cipher_iv=cipher_iv, cipher_algo=cipher_algo,
        )
        if features & 0xFFFF & ~0x0FFF or features & BlobFeatures.V5_NO_EXT_BLOB_TABLE:
            raise m.error(f"{where}: unknown blob features {features:#x}")
        check_blob_supported(m, blob, v6=True)
        if blob_index != position:
            raise m.error(f"{where}: records blob index {blob_index}")
        if chunk_size != self.chunk_size:
            raise m.error(f"{where}: chunk size {chunk_size:#x} differs from the superblock's")
        if chunk_count > 1 << 24:
            raise m.error(f"{where}: chunk count {chunk_count} exceeds 2^24")
        if compressor not in KNOWN_COMPRESSORS or ci_compressor not in KNOWN_COMPRESSORS:
            raise m.error(f"{where}: unknown compression algorithm id {max(compressor, ci_compressor)}")
        if digester not in KNOWN_DIGESTERS:
            raise m.error(f"{where}: unknown digest algorithm id {digester}")
        if not features & BlobFeatures.ALIGNED:
            raise m.error(f"{where}: blob features {features:#x} lack ALIGNED (required by RAFS v6)")
        if ci_csize > ci_usize:
            raise m.error(f"{where}: chunk-info compressed size {ci_csize} exceeds its uncompressed size")
        if features & BlobFeatures.ZRAN and not features & BlobFeatures.CHUNK_INFO_V2:
            raise m.error(f"{where}: blob features {features:#x}: ZRAN without CHUNK_INFO_V2")
        if features & BlobFeatures.ZRAN:
            if ci_usize < 24 * chunk_count:
                raise m.error(f"{where}: chunk-info size {ci_usize} is less than 24 x {chunk_count} chunks")
        elif features & BlobFeatures.CHUNK_INFO_V2:
            if ci_usize != 24 * chunk_count:
                raise m.error(f"{where}: chunk-info size {ci_usize} is not 24 x {chunk_count} chunks")
        elif not features & BlobFeatures.IS_CHUNKDICT_GENERATED and ci_usize != 16 * chunk_count:
            raise m.error(f"{where}: chunk-info size {ci_usize} is not 16 x {chunk_count} chunks")
        if compressed_size >= 1 << 40 or uncompressed_size >= 1 << 44:
            raise m.error(f"{where}: blob sizes out of range")
        return blob

    # -- inodes ------------------------------------------------------------------------------

    def _inode(self, nid: int) -> _Inode:
        recent = self._recent
        n = recent.get(nid)
        if n is None:
            n = self._decode_inode(nid)
            if len(recent) >= _RECENT_INODES:
                recent.clear()  # a walk asks for each inode a few times in a row: a tiny cache does
            recent[nid] = n
        return n

    def _decode_inode(self, nid: int) -> _Inode:
        m, buf = self._m, self._buf
        if not 0 <= nid <= self._max_nid:
            raise m.error(f"inode nid {nid} lies outside the file")
        off = self._meta + nid * 32
        fmt = _U16.unpack_from(buf, off)[0]
        if fmt & ~0xF:
            raise m.error(f"inode nid {nid}: unknown i_format {fmt:#x}")
        layout = fmt >> 1
        if layout not in (EROFS_INODE_FLAT_PLAIN, EROFS_INODE_FLAT_INLINE, EROFS_INODE_CHUNK_BASED):
            if layout in (1, 3):
                raise UnsupportedFeatureError(
                    f"{m.path}: inode nid {nid} uses EROFS compression, which RAFS does not use"
                )
            raise m.error(f"inode nid {nid}: unknown data layout {layout}")
        n = _Inode()
        n.nid, n.off, n.layout = nid, off, layout
        if fmt & 1:
            m.check(off, EROFS_INODE_EXTENDED_SIZE, "inode nid {}", nid)
            (_f, icount, n.mode, _r, n.size, n.i_u, _ino, n.uid, n.gid, n.mtime, n.mtime_nsec,
             n.nlink) = _EXTENDED.unpack_from(buf, off)
            n.isize = EROFS_INODE_EXTENDED_SIZE
        else:
            (_f, icount, n.mode, n.nlink, n.size, _r, n.i_u, _ino, n.uid, n.gid, _r2) = _COMPACT.unpack_from(
                buf, off)
            n.isize = EROFS_INODE_COMPACT_SIZE
            n.mtime = n.mtime_nsec = 0
        if stat.S_IFMT(n.mode) not in _FILE_TYPES:
            raise m.error(f"inode nid {nid}: invalid file mode {n.mode:#o}")
        if n.nlink == 0:
            raise m.error(f"inode nid {nid}: link count is 0")
        n.xattr_size = _XATTR_IBODY_HEADER + 4 * (icount - 1) if icount else 0
        if icount:
            m.check(off + n.isize, n.xattr_size, "xattrs of inode nid {}", nid)
        return n

    def inode_count(self) -> int:
        """Return ``s_inos`` of the EROFS superblock."""
        return self._inos

    def getattr(self, ino: int) -> InodeAttrs:
        """Return the attributes of inode ``ino`` (a nid)."""
        n = self._inode(ino)
        explicit = self.explicit_uid_gid
        mode = n.mode
        fmt = mode & 0o170000
        # positional (ino, mode, uid, gid, size, nlink, mtime, mtime_nsec, rdev, has_xattr): faster
        return InodeAttrs(
            ino, mode, n.uid if explicit else 0, n.gid if explicit else 0, n.size, n.nlink, n.mtime,
            n.mtime_nsec, n.i_u if fmt == stat.S_IFCHR or fmt == stat.S_IFBLK else 0, n.xattr_size > 0,
        )

    # -- directory and symlink data ----------------------------------------------------------

    def _data_layout(self, n: _Inode, what: str) -> tuple[int, int, int]:
        """Return ``(nblocks, base, tail_off)`` of a directory/symlink's data; tail_off -1 if plain."""
        m, bs, size = self._m, self.block_size, n.size
        base = n.i_u * bs
        nblocks = (size + bs - 1) >> self._bits
        if n.layout == EROFS_INODE_FLAT_PLAIN:
            m.check(base, size, "{} data of inode nid {}", what, n.nid)
            return nblocks, base, -1
        if n.layout != EROFS_INODE_FLAT_INLINE:
            raise m.error(f"{what} inode nid {n.nid} has data layout {n.layout}")
        full, tail = size >> self._bits, size & (bs - 1)
        if full:
            m.check(base, full * bs, "{} data of inode nid {}", what, n.nid)
        tail_off = n.off + n.isize + n.xattr_size
        if tail:
            m.check(tail_off, tail, "inline {} data of inode nid {}", what, n.nid)
            if (tail_off & (bs - 1)) + tail > bs:
                raise m.error(f"inline {what} data of inode nid {n.nid} crosses a block boundary")
        return nblocks, base, tail_off

    def _block(self, n: _Inode, geo: tuple[int, int, int], j: int) -> tuple[int, int]:
        nblocks, base, tail_off = geo
        bs = self.block_size
        if tail_off >= 0 and j == nblocks - 1 and n.size & (bs - 1):
            return tail_off, n.size & (bs - 1)
        return base + j * bs, min(bs, n.size - j * bs)

    def _dirent_count(self, start: int, length: int, nid: int) -> int:
        if length < _DIRENT_SIZE:
            raise self._m.error(f"directory nid {nid}: dirent block of {length} bytes")
        nameoff0: int = _U16.unpack_from(self._buf, start + 8)[0]
        if (nameoff0 < _DIRENT_SIZE or nameoff0 % _DIRENT_SIZE or nameoff0 >= self.block_size
                or nameoff0 > length):
            raise self._m.error(f"directory nid {nid}: invalid first name offset {nameoff0}")
        return nameoff0 // _DIRENT_SIZE

    def _dirent(self, start: int, length: int, count: int, j: int, nid: int) -> tuple[bytes, int]:
        e = start + j * _DIRENT_SIZE
        child, nameoff = _DIRENT.unpack_from(self._buf, e)
        end = _U16.unpack_from(self._buf, e + _DIRENT_SIZE + 8)[0] if j + 1 < count else length
        if not count * _DIRENT_SIZE <= nameoff < end <= length:
            raise self._m.error(f"directory nid {nid}: dirent {j} has an invalid name range {nameoff}..{end}")
        name = self._buf[start + nameoff:start + end]
        if j + 1 == count:
            name = name.split(b"\0", 1)[0]
            if not name:
                raise self._m.error(f"directory nid {nid}: dirent {j} has an empty name")
        if len(name) > _NAME_LEN:
            raise self._m.error(f"directory nid {nid}: dirent {j} has a name of {len(name)} bytes "
                                f"(the limit is {_NAME_LEN})")
        return name, child

    def _dir(self, ino: int) -> tuple[_Inode, tuple[int, int, int]]:
        n = self._inode(ino)
        if not stat.S_ISDIR(n.mode):
            raise NotADirectoryError(errno.ENOTDIR, f"inode {ino} is not a directory")
        return n, self._data_layout(n, "directory")

    def _lookup_any(self, parent: int, name: bytes) -> int | None:
        n, geo = self._dir(parent)
        lo, hi = 0, geo[0] - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            start, length = self._block(n, geo, mid)
            count = self._dirent_count(start, length, parent)
            first, nid = self._dirent(start, length, count, 0, parent)
            if name < first:
                hi = mid - 1
                continue
            if name == first:
                return nid
            last, nid = self._dirent(start, length, count, count - 1, parent)
            if name > last:
                lo = mid + 1
                continue
            if name == last:
                return nid
            a, b = 1, count - 2
            while a <= b:
                k = (a + b) // 2
                cur, nid = self._dirent(start, length, count, k, parent)
                if name == cur:
                    return nid
                if name < cur:
                    b = k - 1
                else:
                    a = k + 1
            return None
        return None

    def lookup(self, parent: int, name: bytes) -> int | None:
        """Return the nid of ``name`` in directory ``parent`` (binary search over dirent blocks)."""
        if name in (b".", b"..") or not name:
            return None
        return self._lookup_any(parent, name)

    def parent(self, ino: int) -> int | None:
        """Return the nid recorded in a directory's ``..`` entry (None for other inodes)."""
        if not stat.S_ISDIR(self._inode(ino).mode):
            return None
        return self._lookup_any(ino, b"..")

    def _block_counts(self, ino: int, n: _Inode, geo: tuple[int, int, int]) -> list[int]:
        """Return the number of visible entries (no ``.``/``..``) in each dirent block."""
        counts = self._dir_counts.get(ino)
        if counts is None:
            counts = []
            for j in range(geo[0]):
                start, length = self._block(n, geo, j)
                count = self._dirent_count(start, length, ino)
                hidden = 0
                for k in range(count):
                    name, _ = self._dirent(start, length, count, k, ino)
                    if name in (b".", b".."):
                        hidden += 1
                counts.append(count - hidden)
            if len(self._dir_counts) >= _DIR_COUNT_CACHE:
                self._dir_counts.clear()
            self._dir_counts[ino] = counts
        return counts

    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        """Yield ``(name, nid)`` of the entries of directory ``ino`` from entry index ``offset``."""
        n, geo = self._dir(ino)
        first_block = 0
        if offset > 0:
            for count in self._block_counts(ino, n, geo):
                if offset < count:
                    break
                offset -= count
                first_block += 1
        return self._iter_dir(ino, n, geo, first_block, offset)

    def _iter_dir(self, ino: int, n: _Inode, geo: tuple[int, int, int], first_block: int,
                  skip: int) -> Iterator[tuple[bytes, int]]:
        m, buf = self._m, self._buf
        dirent, u16 = _DIRENT.unpack_from, _U16.unpack_from
        for j in range(first_block, geo[0]):
            start, length = self._block(n, geo, j)
            count = self._dirent_count(start, length, ino)
            last = count - 1
            for k in range(count):
                # _dirent() inlined for all but the last entry of a block (and any entry in error)
                e = start + k * _DIRENT_SIZE
                nid, nameoff = dirent(buf, e)
                end = u16(buf, e + _DIRENT_SIZE + 8)[0] if k < last else length
                if (k < last and count * _DIRENT_SIZE <= nameoff < end <= length
                        and end - nameoff <= _NAME_LEN):
                    name = buf[start + nameoff:start + end]
                else:
                    name, nid = self._dirent(start, length, count, k, ino)
                if name == b"." or name == b"..":
                    continue
                if skip:
                    skip -= 1
                    continue
                if b"/" in name or b"\0" in name:
                    check_name(m, name, f"directory nid {ino}")  # raises
                yield name, nid

    def readlink(self, ino: int) -> bytes:
        """Return the target of symlink ``ino``."""
        n = self._inode(ino)
        if not stat.S_ISLNK(n.mode):
            raise OSError(errno.EINVAL, f"inode {ino} is not a symlink")
        if not 0 < n.size <= self.block_size:
            raise self._m.error(f"symlink nid {ino}: target size {n.size} is not in 1..{self.block_size}")
        geo = self._data_layout(n, "symlink")
        start, length = self._block(n, geo, 0)
        return self._buf[start:start + length]

    def xattrs(self, ino: int) -> dict[bytes, bytes]:
        """Return the inline xattrs of ``ino`` (full names)."""
        n = self._inode(ino)
        if not n.xattr_size:
            return {}
        m, buf = self._m, self._buf
        start = n.off + n.isize
        end = start + n.xattr_size
        if buf[start + 4]:
            raise m.error(f"inode nid {ino}: shared xattrs are not used by RAFS v6")
        out: dict[bytes, bytes] = {}
        p = start + _XATTR_IBODY_HEADER
        while p < end:
            if p + 4 > end:
                raise m.error(f"inode nid {ino}: truncated xattr entry")
            name_len, index, value_size = _XATTR_ENTRY.unpack_from(buf, p)
            total = 4 + name_len + value_size
            if p + total > end:
                raise m.error(f"inode nid {ino}: xattr entry overruns the xattr area")
            prefix = EROFS_XATTR_PREFIXES.get(index)
            if prefix is None:
                raise m.error(f"inode nid {ino}: unknown xattr name index {index}")
            out[prefix + buf[p + 4:p + 4 + name_len]] = buf[p + 4 + name_len:p + total]
            p += (total + 3) & ~3
        return out

    # -- chunks ------------------------------------------------------------------------------

    def _chunk_map(self) -> ChunkLookup:
        cmap = self._chunk_map_cache
        if cmap is None:
            keys = array("Q")
            bits = self._bits
            with memoryview(self._buf) as mv:  # no copy of the table; released before any close()
                for bi, uoff, idx in _CHUNK_KEY.iter_unpack(mv[self._ct_off:self._ct_off + self._ct_size]):
                    blk = uoff >> bits
                    ok = bi < 255 and idx < 1 << 24 and blk < 1 << 32
                    keys.append((bi << 56) | (idx << 32) | blk if ok else _NO_KEY)
            cmap = self._chunk_map_cache = ChunkLookup(keys)
        return cmap

    def _chunk_indexes(self, ino: int) -> tuple[_Inode, int, int]:
        """Return ``(inode, index array offset, count)`` of a regular file (count 0 if not one)."""
        n = self._inode(ino)
        if not stat.S_ISREG(n.mode) or n.size == 0:
            return n, 0, 0
        m = self._m
        if n.layout != EROFS_INODE_CHUNK_BASED:
            raise UnsupportedFeatureError(
                f"{m.path}: inode nid {ino} keeps file data inside the bootstrap (layout {n.layout}), "
                "which RAFS does not use"
            )
        if not n.i_u & EROFS_CHUNK_FORMAT_INDEXES:
            raise UnsupportedFeatureError(
                f"{m.path}: inode nid {ino} uses an EROFS block map, not chunk indexes"
            )
        count = -(-n.size // self.chunk_size)
        base = n.off + align8(n.isize + n.xattr_size)
        m.check(base, 8 * count, "chunk index array of inode nid {}", ino)
        return n, base, count

    def _position(self, n: _Inode, base: int, k: int) -> int:
        """Return the chunk-table position that chunk index ``k`` of inode ``n`` refers to."""
        lo, hi, blk = _CHUNK_INDEX.unpack_from(self._buf, base + 8 * k)
        device = hi & 0xFF
        if device == 0:
            raise self._m.error(f"inode nid {n.nid}: chunk {k} names no blob device")
        bi, ci = device - 1, ((hi >> 8) << 16) | lo
        pos = self._chunk_map().get((bi << 56) | (ci << 32) | blk)
        if pos is None:
            raise self._m.error(
                f"inode nid {n.nid}: chunk {k} (blob {bi}, chunk {ci}, block {blk}) is not in the chunk table"
            )
        return pos

    def _resolve(self, n: _Inode, base: int, k: int) -> ChunkInfo:
        m = self._m
        pos = self._position(n, base, k)
        c = ChunkInfo.unpack_from(self._buf, self._ct_off + pos * CHUNK_INFO_SIZE)
        cs = self.chunk_size
        c.file_offset = k * cs
        if c.uncompressed_size != min(cs, n.size - k * cs):
            raise m.error(
                f"inode nid {n.nid} chunk {k}: uncompressed size {c.uncompressed_size} does not fit the "
                f"file size {n.size}"
            )
        check_chunk(m, c, self.blobs, cs, "inode nid {} chunk {}", n.nid, k)
        return c

    def chunks(self, ino: int) -> list[ChunkInfo]:
        """Return the chunk records of regular file ``ino`` (empty for other inodes)."""
        n, base, count = self._chunk_indexes(ino)
        return [self._resolve(n, base, k) for k in range(count)]

    def prepare_chunk_checks(self) -> None:
        """Build the chunk lookup and the per-record validity :meth:`chunk_bytes` uses."""
        self._chunk_map()
        if self._valid_records is None:
            with memoryview(self._buf) as mv:  # released before any close()
                self._valid_records = valid_chunk_records(
                    mv[self._ct_off:self._ct_off + self._ct_size], self.blobs, self.chunk_size)

    def chunk_bytes(self, ino: int) -> int:
        """Return the bytes the chunks of regular file ``ino`` cover, every index and record checked
        as :meth:`chunks` checks them (the same errors), without decoding records into objects."""
        n, base, count = self._chunk_indexes(ino)
        if not count:
            return 0
        valid = self._valid_records
        if valid is None:
            self.prepare_chunk_checks()
            valid = self._valid_records
            assert valid is not None
        buf, ct, cs, size = self._buf, self._ct_off, self.chunk_size, n.size
        cmap = self._chunk_map()
        keys, order = cmap._keys, cmap._pos
        nkeys = len(keys)
        total = 0
        for k in range(count):  # _position() inlined (it raises the errors when a lookup fails)
            lo, hi, blk = _CHUNK_INDEX.unpack_from(buf, base + 8 * k)
            device = hi & 0xFF
            key = ((device - 1) << 56) | ((((hi >> 8) << 16) | lo) << 32) | blk
            i = bisect.bisect_left(keys, key) if device else nkeys
            if i == nkeys or keys[i] != key or key == _NO_KEY:
                pos = self._position(n, base, k)
            else:
                pos = i if order is None else order[i]
            usize: int = _U32.unpack_from(buf, ct + pos * CHUNK_INFO_SIZE + 44)[0]
            if not valid[pos] or usize != min(cs, size - k * cs):
                self._resolve(n, base, k)  # raises the error chunks() raises
            total += usize
        return total

    def chunks_for_range(self, ino: int, offset: int, size: int) -> list[ChunkInfo]:
        """Return only the chunk records covering file bytes ``[offset, offset + size)``."""
        n, base, count = self._chunk_indexes(ino)
        if size <= 0 or count == 0:
            return []
        first = offset // self.chunk_size
        last = min(count - 1, (offset + size - 1) // self.chunk_size)
        return [self._resolve(n, base, k) for k in range(first, last + 1)]

    def chunk_table_len(self) -> int:
        """Return the number of records in the bootstrap's chunk table."""
        return int(self._ct_size) // CHUNK_INFO_SIZE

    def chunk_table_record(self, pos: int) -> ChunkInfo:
        """Decode and check record ``pos`` of the chunk table (read through the mmap)."""
        if not 0 <= pos < self._ct_size // CHUNK_INFO_SIZE:
            raise IndexError(pos)
        c = ChunkInfo.unpack_from(self._buf, self._ct_off + pos * CHUNK_INFO_SIZE)
        check_chunk(self._m, c, self.blobs, self.chunk_size, "chunk table record {}", pos)
        return c

    def chunk_table(self) -> list[ChunkInfo]:
        """Decode and check every record of the bootstrap chunk table (for check/merge tools)."""
        return [self.chunk_table_record(pos) for pos in range(self._ct_size // CHUNK_INFO_SIZE)]

    def prefetch_inodes(self) -> list[int]:
        """Return the nids listed in the prefetch table."""
        data = self._buf[self._pf_off:self._pf_off + self._pf_size]
        return [nid for (nid,) in _U32.iter_unpack(data) if nid]

    def close(self) -> None:
        """Unmap the bootstrap."""
        self._buf = b""
        self._m.close()
