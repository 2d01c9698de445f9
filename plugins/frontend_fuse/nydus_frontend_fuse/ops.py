"""The FUSE operations: a read-only filesystem over the daemon's :class:`~.vfs.Vfs`.

Every handler raises only ``FUSEError``: exceptions from the image or the read pipeline go through
:class:`~.faults.FaultTranslator` (EIO, logged once, counted). Metadata operations decode the
``mmap``ed bootstrap inline on the trio thread (they are short); data reads that miss the local cache
go to worker threads through ``trio.to_thread.run_sync`` with a capacity limiter, while reads the cache
can serve are answered inline (measured faster: see the plugin README). Every write-ish operation
answers EROFS.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyfuse3
import trio
from pyfuse3 import EntryAttributes, FileInfo, FUSEError

from .faults import FaultTranslator
from .metrics import Fop
from .vfs import ROOT, PseudoDir, Vfs

if TYPE_CHECKING:
    from .instance import RafsInstance

log = logging.getLogger("nydusd")

BLOCK = 4096
_PSEUDO_TIMEOUT = 1.0
_ENOATTR = pyfuse3.ENOATTR


@dataclass(frozen=True)
class CachePolicy:
    """How long the kernel may trust what we tell it (an image never changes under a mount)."""

    entry_timeout: float = 86400.0
    attr_timeout: float = 86400.0
    negative_timeout: float = 86400.0
    keep_cache: bool = True
    #: Push a whole file of up to this many bytes into the page cache when it is opened and its
    #: chunks are all in the local cache (FUSE_NOTIFY_STORE): its reads then need no request.
    #: Done once per inode until the kernel asks to read it again (its pages were evicted).
    store_on_open: int = 1 << 20


class _DirHandle:
    """An open directory: where the last ``readdir`` stopped, so paging does not rescan."""

    __slots__ = ("fuse_ino", "inst", "it", "local", "next_id", "pending", "pseudo_entries")

    def __init__(self, fuse_ino: int, inst: RafsInstance | None, local: int) -> None:
        self.fuse_ino = fuse_ino
        self.inst = inst
        self.local = local
        self.it: Iterator[tuple[bytes, int]] | None = None
        self.next_id = -1
        self.pending: tuple[bytes, int] | None = None
        self.pseudo_entries: list[tuple[bytes, PseudoDir | RafsInstance]] | None = None


class NydusOperations(pyfuse3.Operations):
    """pyfuse3 operations serving the RAFS instances of a :class:`Vfs`, read-only."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(
        self,
        vfs: Vfs,
        *,
        faults: FaultTranslator | None = None,
        limiter: trio.CapacityLimiter | None = None,
        cache: CachePolicy | None = None,
        inline_hits: bool = True,
    ) -> None:
        super().__init__()
        self.vfs = vfs
        self.faults = faults or FaultTranslator()
        self.limiter = limiter or trio.CapacityLimiter(4)
        self.cache = cache or CachePolicy()
        self.inline_hits = inline_hits
        #: called before a handler awaits (a read going to a worker thread): see ``fusetasks``
        self.before_wait: Callable[[], None] | None = None
        self._dirs: dict[int, _DirHandle] = {}
        self._next_dir_fh = 1
        self._inflight: dict[int, tuple[int, float]] = {}
        self._next_req = 0
        self.started_ns = time.time_ns()
        # a store is wasted when the kernel drops the page cache at open (keep_cache off)
        self._store_max = self.cache.store_on_open if self.cache.keep_cache else 0

    # -- helpers --------------------------------------------------------------------------------

    def _fail(self, exc: BaseException, inst: RafsInstance | None, ino: int, op: str) -> FUSEError:
        where = inst.describe() if inst is not None else "nydusd"
        return self.faults.translate(exc, where=where, ino=ino, op=op)

    def _attrs(self, inst: RafsInstance, local: int, fuse_ino: int) -> EntryAttributes:
        a = inst.image.getattr(local)
        e = EntryAttributes()
        e.st_ino = fuse_ino
        e.entry_timeout = self.cache.entry_timeout
        e.attr_timeout = self.cache.attr_timeout
        e.st_mode = a.mode
        e.st_nlink = a.nlink
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_rdev = a.rdev
        size = a.size
        e.st_size = size
        e.st_blksize = BLOCK
        e.st_blocks = (size + 511) >> 9
        ns = a.mtime * 1_000_000_000 + a.mtime_nsec
        e.st_mtime_ns = ns
        e.st_ctime_ns = ns
        e.st_atime_ns = ns
        return e

    def _pseudo_attrs(self, d: PseudoDir) -> EntryAttributes:
        e = EntryAttributes()
        e.st_ino = d.ino
        e.entry_timeout = _PSEUDO_TIMEOUT
        e.attr_timeout = _PSEUDO_TIMEOUT
        e.st_mode = stat.S_IFDIR | 0o755
        e.st_nlink = 2 + sum(1 for c in d.children.values() if isinstance(c, PseudoDir))
        e.st_uid = 0
        e.st_gid = 0
        e.st_size = BLOCK
        e.st_blksize = BLOCK
        e.st_blocks = 8
        e.st_mtime_ns = e.st_ctime_ns = e.st_atime_ns = d.mtime_ns
        return e

    def _mount_root_attrs(self, inst: RafsInstance) -> EntryAttributes:
        return self._attrs(inst, inst.root_ino, self.vfs.to_fuse(inst, inst.root_ino))

    def inflight(self) -> list[dict[str, Any]]:
        """Return the reads waiting on the pipeline (``GET /api/v1/metrics/inflight``)."""
        return [{"inode": ino, "opcode": "read", "unique": req, "timestamp_secs": int(ts)}
                for req, (ino, ts) in sorted(self._inflight.items())]

    # -- metadata -------------------------------------------------------------------------------

    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> EntryAttributes:
        """Look up ``name`` in a directory (negative answers are cached for image directories)."""
        vfs = self.vfs
        if vfs.root_instance is None and parent_inode in vfs.pseudo:
            d = vfs.pseudo[parent_inode]
            child = d.children.get(name)
            if name == b".":
                return self._pseudo_attrs(d)
            if name == b"..":
                return self._pseudo_attrs(vfs.pseudo[d.parent])
            if child is None:
                raise FUSEError(errno.ENOENT)
            if isinstance(child, PseudoDir):
                return self._pseudo_attrs(child)
            try:
                e = self._mount_root_attrs(child)
            except FUSEError:
                raise
            except Exception as exc:  # a broken image must not break the pseudo root
                raise self._fail(exc, child, child.root_ino, "lookup") from None
            child.refs += 1
            return e
        inst, local = vfs.resolve(parent_inode)
        started = time.monotonic_ns()
        try:
            found = inst.image.lookup(local, name)
            if found is None:
                inst.metrics.record(Fop.LOOKUP, local, True, 0, started)
                e = EntryAttributes()
                e.st_ino = 0
                e.entry_timeout = self.cache.negative_timeout
                return e
            fuse_ino = vfs.to_fuse(inst, found)
            e = self._attrs(inst, found, fuse_ino)
        except FUSEError:
            inst.metrics.record(Fop.LOOKUP, local, False, 0, started)
            raise
        except Exception as exc:
            inst.metrics.record(Fop.LOOKUP, local, False, 0, started)
            raise self._fail(exc, inst, local, "lookup") from None
        inst.refs += 1
        if inst.track_names:
            inst.note_name(found, local, name)
        inst.metrics.record(Fop.LOOKUP, found, True, 0, started)
        return e

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        """Drop kernel references; retired (unmounted) instances are closed once unreferenced."""
        slots = self.vfs.slots
        for ino, n in inode_list:
            inst = slots.get(ino >> 48)
            if inst is not None:
                inst.refs -= n
        for inst in self.vfs.reap():
            log.info("closing unmounted instance %s (no more references)", inst.describe())
            inst.close()

    async def getattr(self, inode: int, ctx: Any = None) -> EntryAttributes:
        """Return the attributes of ``inode``."""
        vfs = self.vfs
        if vfs.root_instance is None and inode in vfs.pseudo:
            return self._pseudo_attrs(vfs.pseudo[inode])
        inst, local = vfs.resolve(inode)
        try:
            e = self._attrs(inst, local, inode)
        except Exception as exc:
            inst.metrics.record(Fop.GETATTR, local, False)
            raise self._fail(exc, inst, local, "getattr") from None
        inst.metrics.record(Fop.GETATTR, local, True)
        return e

    async def readlink(self, inode: int, ctx: Any = None) -> bytes:
        """Return a symlink's target."""
        inst, local = self.vfs.resolve(inode)
        try:
            if not stat.S_ISLNK(inst.image.getattr(local).mode):
                raise FUSEError(errno.EINVAL)
            target = inst.image.readlink(local)
        except Exception as exc:
            inst.metrics.record(Fop.READLINK, local, False)
            raise self._fail(exc, inst, local, "readlink") from None
        inst.metrics.record(Fop.READLINK, local, True)
        return target

    async def access(self, inode: int, mode: int, ctx: Any = None) -> bool:
        """Check ``mode`` (R_OK/W_OK/X_OK) for the caller; writes are always refused."""
        if mode & os.W_OK:
            raise FUSEError(errno.EROFS)
        if self.vfs.root_instance is None and inode in self.vfs.pseudo:
            st_mode, uid, gid = stat.S_IFDIR | 0o755, 0, 0
            inst = None
        else:
            inst, local = self.vfs.resolve(inode)
            try:
                a = inst.image.getattr(local)
            except Exception as exc:
                raise self._fail(exc, inst, local, "access") from None
            st_mode, uid, gid = a.mode, a.uid, a.gid
        ok = _permitted(st_mode, uid, gid, mode, ctx)
        if inst is not None:
            inst.metrics.record(Fop.ACCESS, 0, ok)
        if not ok:
            raise FUSEError(errno.EACCES)
        return True

    async def statfs(self, ctx: Any = None) -> pyfuse3.StatvfsData:
        """Report sizes summed over the mounted images (nothing is free: the fs is read-only)."""
        s = pyfuse3.StatvfsData()
        blocks = files = 0
        for inst in self.vfs.instances():
            try:
                blocks += inst.data_size() // BLOCK
                files += inst.image.inode_count()
            except Exception as exc:
                raise self._fail(exc, inst, 0, "statfs") from None
            inst.metrics.record(Fop.STATFS, 0, True)
        s.f_bsize = s.f_frsize = BLOCK
        s.f_blocks = blocks
        s.f_bfree = s.f_bavail = 0
        s.f_files = files
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    # -- xattrs ---------------------------------------------------------------------------------

    async def getxattr(self, inode: int, name: bytes, ctx: Any = None) -> bytes:
        """Return one extended attribute (ENOSYS when ``enable_xattr`` is off, as upstream)."""
        if self.vfs.root_instance is None and inode in self.vfs.pseudo:
            raise FUSEError(_ENOATTR)
        inst, local = self.vfs.resolve(inode)
        if not inst.enable_xattr:
            raise FUSEError(errno.ENOSYS)
        try:
            value = inst.xattrs(local).get(name)
        except Exception as exc:
            inst.metrics.record(Fop.GETXATTR, local, False)
            raise self._fail(exc, inst, local, "getxattr") from None
        inst.metrics.record(Fop.GETXATTR, local, value is not None)
        if value is None:
            raise FUSEError(_ENOATTR)
        return value

    async def listxattr(self, inode: int, ctx: Any = None) -> Sequence[bytes]:
        """Return the names of a file's extended attributes."""
        if self.vfs.root_instance is None and inode in self.vfs.pseudo:
            return []
        inst, local = self.vfs.resolve(inode)
        if not inst.enable_xattr:
            raise FUSEError(errno.ENOSYS)
        try:
            names = list(inst.xattrs(local))
        except Exception as exc:
            inst.metrics.record(Fop.LISTXATTR, local, False)
            raise self._fail(exc, inst, local, "listxattr") from None
        inst.metrics.record(Fop.LISTXATTR, local, True)
        return names

    # -- directories ----------------------------------------------------------------------------

    async def opendir(self, inode: int, ctx: Any = None) -> int:
        """Open a directory for listing."""
        vfs = self.vfs
        if vfs.root_instance is None and inode in vfs.pseudo:
            h = _DirHandle(inode, None, inode)
            h.pseudo_entries = sorted(vfs.pseudo[inode].children.items())
        else:
            inst, local = vfs.resolve(inode)
            try:
                if not stat.S_ISDIR(inst.image.getattr(local).mode):
                    raise FUSEError(errno.ENOTDIR)
            except Exception as exc:
                inst.metrics.record(Fop.OPENDIR, local, False)
                raise self._fail(exc, inst, local, "opendir") from None
            inst.metrics.record(Fop.OPENDIR, local, True)
            inst.open_handles += 1
            h = _DirHandle(inode, inst, local)
        fh = self._next_dir_fh
        self._next_dir_fh += 1
        self._dirs[fh] = h
        return fh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        """List entries with their attributes (readdirplus), resuming where the last page ended.

        Positions: 1 is after ``.``, 2 after ``..``, ``2 + k`` after the k-th entry."""
        h = self._dirs.get(fh)
        if h is None:
            raise FUSEError(errno.EBADF)
        if h.inst is None:
            self._readdir_pseudo(h, start_id, token)
            return
        inst = h.inst
        vfs = self.vfs
        started = time.monotonic_ns()
        pos = start_id
        try:
            if pos == 0:
                if not pyfuse3.readdir_reply(token, b".", self._attrs(inst, h.local, h.fuse_ino), 1):
                    return
                pos = 1
            if pos == 1:
                if not pyfuse3.readdir_reply(token, b"..", self._parent_attrs(inst, h), 2):
                    return
                pos = 2
            if h.it is None or h.next_id != pos:
                h.it = inst.image.readdir(h.local, pos - 2)
                h.pending = None
                h.next_id = pos
            track = inst.track_names
            while True:
                entry = h.pending
                if entry is None:
                    entry = next(h.it, None)
                    if entry is None:
                        break
                name, child = entry
                fuse_ino = vfs.to_fuse(inst, child)
                attrs = self._attrs(inst, child, fuse_ino)
                if not pyfuse3.readdir_reply(token, name, attrs, pos + 1):
                    h.pending = entry
                    break
                h.pending = None
                inst.refs += 1
                if track:
                    inst.note_name(child, h.local, name)
                pos += 1
                h.next_id = pos
        except FUSEError:
            inst.metrics.record(Fop.READDIRPLUS, h.local, False, 0, started)
            raise
        except Exception as exc:
            h.it = None
            inst.metrics.record(Fop.READDIRPLUS, h.local, False, 0, started)
            raise self._fail(exc, inst, h.local, "readdir") from None
        inst.metrics.record(Fop.READDIRPLUS, h.local, True, 0, started)

    def _parent_attrs(self, inst: RafsInstance, h: _DirHandle) -> EntryAttributes:
        vfs = self.vfs
        if h.local == inst.root_ino:
            if inst.slot == 0:
                return self._attrs(inst, h.local, h.fuse_ino)
            parent = vfs.pseudo[ROOT]
            for d in vfs.pseudo.values():
                if inst in d.children.values():
                    parent = d
                    break
            return self._pseudo_attrs(parent)
        parent_local = inst.parent_of(h.local)
        if parent_local is None:
            return self._attrs(inst, h.local, h.fuse_ino)
        return self._attrs(inst, parent_local, vfs.to_fuse(inst, parent_local))

    def _readdir_pseudo(self, h: _DirHandle, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        vfs = self.vfs
        d = vfs.pseudo[h.local]
        entries: list[tuple[bytes, Any]] = [(b".", d), (b"..", vfs.pseudo[d.parent])]
        entries.extend(h.pseudo_entries or [])
        for i in range(start_id, len(entries)):
            name, child = entries[i]
            if isinstance(child, PseudoDir):
                attrs = self._pseudo_attrs(child)
            else:
                try:
                    attrs = self._mount_root_attrs(child)
                except Exception as exc:
                    raise self._fail(exc, child, child.root_ino, "readdir") from None
            if not pyfuse3.readdir_reply(token, name, attrs, i + 1):
                return
            if i >= 2 and not isinstance(child, PseudoDir):
                child.refs += 1

    async def releasedir(self, fh: int) -> None:
        """Forget an open directory."""
        h = self._dirs.pop(fh, None)
        if h is not None and h.inst is not None:
            h.inst.open_handles -= 1
            self._reap()

    # -- files ----------------------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: Any = None) -> FileInfo:
        """Open a regular file read-only; the handle is the FUSE inode itself."""
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise FUSEError(errno.EROFS)
        if self.vfs.root_instance is None and inode in self.vfs.pseudo:
            raise FUSEError(errno.EISDIR)
        inst, local = self.vfs.resolve(inode)
        try:
            a = inst.image.getattr(local)
        except Exception as exc:
            inst.metrics.record(Fop.OPEN, local, False)
            raise self._fail(exc, inst, local, "open") from None
        mode = a.mode
        if stat.S_ISDIR(mode):
            inst.metrics.record(Fop.OPEN, local, False)
            raise FUSEError(errno.EISDIR)
        opened = inst.opened
        n = opened.get(local, 0)
        opened[local] = n + 1
        inst.open_handles += 1
        inst.metrics.record(Fop.OPEN, local, True)
        if (n == 0 and 0 < a.size <= self._store_max and stat.S_ISREG(mode)
                and local not in inst.stored):
            self._store(inst, local, inode, a.size)
        return FileInfo(fh=inode, keep_cache=self.cache.keep_cache)

    def _store(self, inst: RafsInstance, local: int, inode: int, size: int) -> None:
        """Put the whole (small, locally cached) file into the kernel's page cache.

        Only done when no other handle of the inode is open: then no read of it can be in flight
        holding page locks, so the synchronous store cannot wait on a request we have yet to serve."""
        try:
            data = inst.read_cached(local, 0, size)
            if data is None or len(data) != size:
                return
            pyfuse3.notify_store(inode, 0, data)
            inst.stored.add(local)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                self._store_max = 0  # the kernel cannot do it: stop trying
            log.debug("notify_store of inode %d: %s", inode, exc)
            return
        except Exception as exc:  # the read path will report it properly
            log.debug("store of inode %d skipped: %s", inode, exc)
            return
        m = inst.metrics
        m.record(Fop.READ, local, True, size)
        if m.access_pattern_enabled:
            m.record_read_access(local, inst.path_of)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        """Read file data: cache hits inline, everything else on a worker thread."""
        inst, local = self.vfs.resolve(fh)
        started = time.monotonic_ns()
        if local in inst.stored:
            inst.stored.discard(local)  # the kernel lost the pages we pushed: push again next open
        try:
            data = inst.read_cached(local, off, size) if self.inline_hits else None
            if data is None:
                self._next_req += 1
                req = self._next_req
                self._inflight[req] = (fh, time.time())
                if self.before_wait is not None:
                    self.before_wait()
                try:
                    data = await trio.to_thread.run_sync(inst.read, local, off, size,
                                                         limiter=self.limiter)
                finally:
                    del self._inflight[req]
        except Exception as exc:
            inst.metrics.record(Fop.READ, local, False, 0, started)
            raise self._fail(exc, inst, local, "read") from None
        metrics = inst.metrics
        metrics.record(Fop.READ, local, True, len(data), started)
        if metrics.access_pattern_enabled:
            metrics.record_read_access(local, inst.path_of)
        return data

    async def release(self, fh: int) -> None:
        """Close a file handle."""
        inst = self.vfs.slots.get(fh >> 48)
        if inst is None:
            return
        inst.open_handles -= 1
        try:
            _, local = self.vfs.resolve(fh)
            opened = inst.opened
            n = opened.pop(local, 1) - 1
            if n > 0:
                opened[local] = n
        except FUSEError:
            pass
        inst.metrics.record(Fop.RELEASE, 0, True)
        if inst.retired:
            self._reap()

    # flush, fsync and fsyncdir are left to pyfuse3's ENOSYS: the kernel then stops sending them
    # (one FUSE_FLUSH per close() would otherwise double the requests of a tree walk).

    def _reap(self) -> None:
        for inst in self.vfs.reap():
            log.info("closing unmounted instance %s (no more references)", inst.describe())
            inst.close()

    # -- everything that would write ------------------------------------------------------------

    async def setattr(self, *args: Any) -> EntryAttributes:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def mknod(self, *args: Any) -> EntryAttributes:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def mkdir(self, *args: Any) -> EntryAttributes:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def unlink(self, *args: Any) -> None:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def rmdir(self, *args: Any) -> None:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def symlink(self, *args: Any) -> EntryAttributes:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def rename(self, *args: Any) -> None:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def link(self, *args: Any) -> EntryAttributes:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def write(self, *args: Any) -> int:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def create(self, *args: Any) -> tuple[FileInfo, EntryAttributes]:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def setxattr(self, *args: Any) -> None:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)

    async def removexattr(self, *args: Any) -> None:
        """Refused: read-only."""
        raise FUSEError(errno.EROFS)


def _permitted(st_mode: int, uid: int, gid: int, want: int, ctx: Any) -> bool:
    """Classic UNIX permission check of ``want`` (R_OK/X_OK bits) for the request's caller."""
    if ctx is None or want == os.F_OK:
        return True
    if ctx.uid == 0:
        # root may read anything; it may execute only if someone may (or it is a directory)
        return not (want & os.X_OK) or stat.S_ISDIR(st_mode) or bool(st_mode & 0o111)
    if ctx.uid == uid:
        bits = (st_mode >> 6) & 7
    else:
        groups = {ctx.gid}
        try:
            groups |= pyfuse3.get_sup_groups(ctx.pid)
        except Exception:  # the process may be gone; its primary group still counts
            pass
        bits = (st_mode >> 3) & 7 if gid in groups else st_mode & 7
    need = (4 if want & os.R_OK else 0) | (1 if want & os.X_OK else 0)
    return bits & need == need
