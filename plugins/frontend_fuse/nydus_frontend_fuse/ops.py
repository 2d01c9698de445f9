"""The FUSE operations: a read-only filesystem over the daemon's :class:`~.vfs.Vfs`.

:class:`NydusOperations` only maps FUSE requests to the image API. Whether an inode is a pseudo
directory is :meth:`Vfs.is_pseudo`'s answer; every request on an image runs inside one
:class:`FuseRequest` context, which counts it in the instance's metrics and turns any exception
other than ``FUSEError`` into one through :class:`~.faults.FaultTranslator` (EIO, logged once,
counted), so handlers raise only ``FUSEError``. Metadata operations decode the ``mmap``ed bootstrap
inline on the trio thread (they are short); data reads that miss the local cache go to worker
threads through ``trio.to_thread.run_sync`` with a capacity limiter, while reads the cache can serve
are answered inline (measured faster: see the plugin README). Every write-ish operation answers
EROFS.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

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
class KernelCaching:
    """How long the kernel may trust what we tell it (an image never changes under a mount).

    Not to be confused with :class:`nydus_core.interfaces.CachePolicy` (the local chunk cache)."""

    entry_timeout: float = 86400.0
    attr_timeout: float = 86400.0
    negative_timeout: float = 86400.0
    keep_cache: bool = True
    #: Push a whole file of up to this many bytes into the page cache when it is opened and its
    #: chunks are all in the local cache (FUSE_NOTIFY_STORE): its reads then need no request.
    #: Done once per inode until the kernel asks to read it again (its pages were evicted).
    store_on_open: int = 1 << 20


@dataclass(slots=True, eq=False)
class FuseRequest:
    """Errors and metrics of one FUSE request on one instance: ``with FuseRequest(...) as req: ...``.

    Leaving the block normally counts the request in ``inst.metrics`` (with ``req.ok``, ``req.size``
    and ``req.ino`` as the block left them); an exception counts it as an error, resets the open
    directory ``dir`` (its listing restarts) and, unless it is a ``FUSEError``, is replaced by the
    ``FUSEError`` the fault translator chooses. With ``fop`` None nothing is counted.
    """

    faults: FaultTranslator
    fop: Fop | None
    inst: RafsInstance
    #: the image inode counted (and named in a fault's log line)
    ino: int
    #: ``time.monotonic_ns()`` for requests whose latency is measured, else 0
    started: int = 0
    dir: _DirHandle | None = None
    ok: bool = field(default=True, init=False)
    size: int = field(default=0, init=False)

    def __enter__(self) -> FuseRequest:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        fop = self.fop
        if exc is None:
            if fop is not None:
                self.inst.metrics.record(fop, self.ino, self.ok, self.size, self.started)
            return
        if fop is not None:
            self.inst.metrics.record(fop, self.ino, False, 0, self.started)
        if self.dir is not None:
            self.dir.it = None
        if isinstance(exc, Exception) and not isinstance(exc, FUSEError):
            op = fop.name.lower() if fop is not None else "getattr"
            raise self.faults.translate(exc, where=self.inst.describe(), ino=self.ino, op=op) from None


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
        cache: KernelCaching | None = None,
        inline_hits: bool = True,
    ) -> None:
        super().__init__()
        self.vfs = vfs
        self.faults = faults or FaultTranslator()
        self.limiter = limiter or trio.CapacityLimiter(4)
        self.cache = cache or KernelCaching()
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

    def _request(self, fop: Fop | None, inst: RafsInstance, ino: int, *, timed: bool = False,
                 directory: _DirHandle | None = None) -> FuseRequest:
        """Return the :class:`FuseRequest` context of one request on ``inst`` (latency with ``timed``)."""
        return FuseRequest(self.faults, fop, inst, ino, time.monotonic_ns() if timed else 0, directory)

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
        if vfs.is_pseudo(parent_inode):
            return self._lookup_pseudo(vfs.pseudo[parent_inode], name)
        inst, local = vfs.resolve(parent_inode)
        with self._request(Fop.LOOKUP, inst, local, timed=True) as req:
            found = inst.image.lookup(local, name)
            if found is None:
                e = EntryAttributes()
                e.st_ino = 0
                e.entry_timeout = self.cache.negative_timeout
                return e
            e = self._attrs(inst, found, vfs.to_fuse(inst, found))
            req.ino = found
        inst.refs += 1
        if inst.track_names:
            inst.note_name(found, local, name)
        return e

    def _lookup_pseudo(self, d: PseudoDir, name: bytes) -> EntryAttributes:
        if name == b".":
            return self._pseudo_attrs(d)
        if name == b"..":
            return self._pseudo_attrs(self.vfs.pseudo[d.parent])
        child = d.children.get(name)
        if child is None:
            raise FUSEError(errno.ENOENT)
        if isinstance(child, PseudoDir):
            return self._pseudo_attrs(child)
        with self._request(None, child, child.root_ino):  # a broken image must not break the root
            e = self._mount_root_attrs(child)
        child.refs += 1
        return e

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        """Drop kernel references; retired (unmounted) instances are closed once unreferenced."""
        slots = self.vfs.slots
        for ino, n in inode_list:
            inst = slots.get(ino >> 48)
            if inst is not None:
                inst.refs -= n
        self._reap()

    async def getattr(self, inode: int, ctx: Any = None) -> EntryAttributes:
        """Return the attributes of ``inode``."""
        vfs = self.vfs
        if vfs.is_pseudo(inode):
            return self._pseudo_attrs(vfs.pseudo[inode])
        inst, local = vfs.resolve(inode)
        with self._request(Fop.GETATTR, inst, local):
            return self._attrs(inst, local, inode)

    async def readlink(self, inode: int, ctx: Any = None) -> bytes:
        """Return a symlink's target."""
        inst, local = self.vfs.resolve(inode)
        with self._request(Fop.READLINK, inst, local):
            if not stat.S_ISLNK(inst.image.getattr(local).mode):
                raise FUSEError(errno.EINVAL)
            return inst.image.readlink(local)

    async def access(self, inode: int, mode: int, ctx: Any = None) -> bool:
        """Check ``mode`` (R_OK/W_OK/X_OK) for the caller; writes are always refused."""
        if mode & os.W_OK:
            raise FUSEError(errno.EROFS)
        if self.vfs.is_pseudo(inode):
            if not _permitted(stat.S_IFDIR | 0o755, 0, 0, mode, ctx):
                raise FUSEError(errno.EACCES)
            return True
        inst, local = self.vfs.resolve(inode)
        with self._request(Fop.ACCESS, inst, 0):
            a = inst.image.getattr(local)
            if not _permitted(a.mode, a.uid, a.gid, mode, ctx):
                raise FUSEError(errno.EACCES)
        return True

    async def statfs(self, ctx: Any = None) -> pyfuse3.StatvfsData:
        """Report sizes summed over the mounted images (nothing is free: the fs is read-only)."""
        s = pyfuse3.StatvfsData()
        blocks = files = 0
        for inst in self.vfs.instances():
            with self._request(Fop.STATFS, inst, 0):
                blocks += inst.data_size() // BLOCK
                files += inst.image.inode_count()
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
        if self.vfs.is_pseudo(inode):
            raise FUSEError(_ENOATTR)
        inst, local = self.vfs.resolve(inode)
        if not inst.enable_xattr:
            raise FUSEError(errno.ENOSYS)
        with self._request(Fop.GETXATTR, inst, local) as req:
            value = inst.xattrs(local).get(name)
            req.ok = value is not None
        if value is None:
            raise FUSEError(_ENOATTR)
        return value

    async def listxattr(self, inode: int, ctx: Any = None) -> Sequence[bytes]:
        """Return the names of a file's extended attributes."""
        if self.vfs.is_pseudo(inode):
            return []
        inst, local = self.vfs.resolve(inode)
        if not inst.enable_xattr:
            raise FUSEError(errno.ENOSYS)
        with self._request(Fop.LISTXATTR, inst, local):
            return list(inst.xattrs(local))

    # -- directories ----------------------------------------------------------------------------

    async def opendir(self, inode: int, ctx: Any = None) -> int:
        """Open a directory for listing."""
        vfs = self.vfs
        if vfs.is_pseudo(inode):
            h = _DirHandle(inode, None, inode)
            h.pseudo_entries = sorted(vfs.pseudo[inode].children.items())
        else:
            inst, local = vfs.resolve(inode)
            with self._request(Fop.OPENDIR, inst, local):
                if not stat.S_ISDIR(inst.image.getattr(local).mode):
                    raise FUSEError(errno.ENOTDIR)
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
        inst = h.inst
        if inst is None:
            self._readdir_pseudo(h, start_id, token)
            return
        with self._request(Fop.READDIRPLUS, inst, h.local, timed=True, directory=h):
            self._readdir_image(inst, h, start_id, token)

    def _readdir_image(self, inst: RafsInstance, h: _DirHandle, pos: int,
                       token: pyfuse3.ReaddirToken) -> None:
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
        to_fuse = self.vfs.to_fuse
        track = inst.track_names
        while True:
            entry = h.pending
            if entry is None:
                entry = next(h.it, None)
                if entry is None:
                    return
            name, child = entry
            attrs = self._attrs(inst, child, to_fuse(inst, child))
            if not pyfuse3.readdir_reply(token, name, attrs, pos + 1):
                h.pending = entry
                return
            h.pending = None
            inst.refs += 1
            if track:
                inst.note_name(child, h.local, name)
            pos += 1
            h.next_id = pos

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
                with self._request(None, child, child.root_ino):
                    attrs = self._mount_root_attrs(child)
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
        if self.vfs.is_pseudo(inode):
            raise FUSEError(errno.EISDIR)
        inst, local = self.vfs.resolve(inode)
        with self._request(Fop.OPEN, inst, local):
            a = inst.image.getattr(local)
            if stat.S_ISDIR(a.mode):
                raise FUSEError(errno.EISDIR)
        opened = inst.opened
        n = opened.get(local, 0)
        opened[local] = n + 1
        inst.open_handles += 1
        if (n == 0 and 0 < a.size <= self._store_max and stat.S_ISREG(a.mode)
                and local not in inst.stored):
            self._store(inst, local, inode, a.size)
        return FileInfo(fh=inode, keep_cache=self.cache.keep_cache)

    def _store(self, inst: RafsInstance, local: int, inode: int, size: int) -> None:
        """Put the whole (small, locally cached) file into the kernel's page cache.

        Only done when no other handle of the inode is open: then no read of it can be in flight
        holding page locks, so the synchronous store cannot wait on a request we have yet to serve.
        Failures are only logged (at debug level): the file is then read the usual way."""
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
        if local in inst.stored:
            inst.stored.discard(local)  # the kernel lost the pages we pushed: push again next open
        with self._request(Fop.READ, inst, local, timed=True) as req:
            data = inst.read_cached(local, off, size) if self.inline_hits else None
            if data is None:
                data = await self._read_on_worker(inst, local, fh, off, size)
            req.size = len(data)
        metrics = inst.metrics
        if metrics.access_pattern_enabled:
            metrics.record_read_access(local, inst.path_of)
        return data

    async def _read_on_worker(self, inst: RafsInstance, local: int, fh: int, off: int, size: int) -> bytes:
        """Read through the pipeline on a worker thread, listed in ``inflight()`` meanwhile."""
        self._next_req += 1
        req = self._next_req
        self._inflight[req] = (fh, time.time())
        if self.before_wait is not None:
            self.before_wait()
        try:
            return await trio.to_thread.run_sync(inst.read, local, off, size, limiter=self.limiter)
        finally:
            del self._inflight[req]

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

    # -- everything that would write -------------------------------------------------------------

    async def _read_only(self, *args: Any) -> NoReturn:
        """Refused with EROFS: the filesystem is read-only."""
        raise FUSEError(errno.EROFS)

    _refuse: Any = _read_only  # one handler for every signature below
    setattr = mknod = mkdir = unlink = rmdir = symlink = rename = link = _refuse
    write = create = setxattr = removexattr = _refuse


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
