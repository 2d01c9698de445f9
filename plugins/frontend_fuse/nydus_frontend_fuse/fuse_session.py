"""A minimal FUSE session on a raw ``/dev/fuse`` descriptor (no libfuse): the kernel protocol for a
read-only filesystem of a few files.

:class:`FuseSession` reads requests from the descriptor on a few threads (``os.read``: the kernel
hands each request to exactly one reader), decodes the header, calls a :class:`FuseHandlers` method
and writes the reply with ``os.writev``. Operations: INIT, LOOKUP, FORGET/BATCH_FORGET, GETATTR,
OPEN, READ, RELEASE, OPENDIR, READDIR, RELEASEDIR, STATFS, INTERRUPT (ignored), DESTROY; anything
else answers ENOSYS (writes never reach a read-only mount).

Why not pyfuse3: libfuse allows one session per process (nydusd's fusedev mount already holds it)
and cannot adopt a connection that is already initialised. This session can: pass
``initialised=True`` (with the protocol minor the first daemon negotiated) and it serves a live
connection whose INIT was answered by someone else, the building block of failover (a supervisor
keeps the ``/dev/fuse`` descriptor of a dead daemon and hands it to the next one).

:func:`mount_fuse` opens ``/dev/fuse`` and mounts it with ``mount(2)`` (root only).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import stat
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Attr", "FuseHandlers", "FuseSession", "abort_connection", "connection_id", "mount_fuse",
           "umount"]

log = logging.getLogger("nydusd")

# opcodes (linux/fuse.h)
LOOKUP, FORGET, GETATTR, OPEN, READ, STATFS, RELEASE = 1, 2, 3, 14, 15, 17, 18
INIT, OPENDIR, READDIR, RELEASEDIR, INTERRUPT, DESTROY, BATCH_FORGET = 26, 27, 28, 29, 36, 38, 42
NO_REPLY = frozenset({FORGET, BATCH_FORGET, INTERRUPT})
#: ``FUSE_UNIQUE_RESEND``: the kernel re-sent this request (after ``FUSE_NOTIFY_RESEND``)
RESEND_BIT = 1 << 63

# INIT flags we accept when the kernel offers them
FUSE_ASYNC_READ = 1 << 0
FUSE_BIG_WRITES = 1 << 5
FUSE_MAX_PAGES = 1 << 22
#: open flags of a reply
FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1

KERNEL_VERSION = 7
KERNEL_MINOR = 31
#: pages per request we ask for (FUSE_MAX_PAGES): 1 MiB reads
MAX_PAGES = 256
#: each reader's buffer: the kernel refuses reads into less than a header plus its largest write
BUFSIZE = MAX_PAGES * 4096 + 4096

_IN = struct.Struct("<IIQQIIIHH")  # fuse_in_header: 40 bytes
_OUT = struct.Struct("<IiQ")  # fuse_out_header: 16 bytes
_ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # fuse_attr: 88 bytes
_ENTRY = struct.Struct("<QQQQII")  # fuse_entry_out before its attr
_ATTR_OUT = struct.Struct("<QII")  # fuse_attr_out before its attr
_OPEN_OUT = struct.Struct("<QIi")
_READ_IN = struct.Struct("<QQI")  # fh, offset, size (rest ignored)
_INIT_IN = struct.Struct("<IIII")
_INIT_OUT = struct.Struct("<IIIIHHIIHHIIH22x")  # 64 bytes
_DIRENT = struct.Struct("<QQII")
_STATFS = struct.Struct("<QQQQQIIII24x")  # fuse_kstatfs: 80 bytes

#: how long the kernel may keep attributes and entries (the files never change while mounted)
TIMEOUT = 3600


@dataclass(frozen=True)
class Attr:
    """What ``stat`` shows of one node."""

    ino: int
    mode: int
    size: int = 0
    nlink: int = 1
    mtime: int = 0

    def pack(self) -> bytes:
        """Return the ``fuse_attr`` record."""
        t = self.mtime
        return _ATTR.pack(self.ino, self.size, (self.size + 511) // 512, t, t, t, 0, 0, 0,
                          self.mode, self.nlink, 0, 0, 0, 4096, 0)


class FuseHandlers(Protocol):
    """What a filesystem served by :class:`FuseSession` answers. Raise ``OSError`` with an errno
    to fail a request (anything else is logged and answers EIO)."""

    def lookup(self, parent: int, name: bytes) -> Attr:
        """Return the attributes of ``name`` in directory ``parent``."""
        ...

    def getattr(self, ino: int) -> Attr:
        """Return the attributes of ``ino``."""
        ...

    def open(self, ino: int, flags: int) -> tuple[int, int]:
        """Open ``ino``; return (file handle, FOPEN_* flags)."""
        ...

    def read(self, ino: int, fh: int, offset: int, size: int) -> bytes | memoryview:
        """Return up to ``size`` bytes of ``ino`` at ``offset`` (short only at the end)."""
        ...

    def release(self, ino: int, fh: int) -> None:
        """Close a handle returned by :meth:`open`."""
        ...

    def readdir(self, ino: int) -> Sequence[tuple[bytes, Attr]]:
        """Return every entry of directory ``ino`` (``.`` and ``..`` included)."""
        ...

    def statfs(self) -> tuple[int, int]:
        """Return (total bytes, number of files)."""
        ...


class FuseSession:
    """Serves one FUSE connection (``fd``, an open ``/dev/fuse``) with ``handlers``.

    :meth:`start` runs ``threads`` reader threads; with ``initialised=True`` the connection's INIT
    is taken as already answered (protocol minor ``minor``) and serving starts on the live
    connection. The session ends when the connection goes away (unmount, abort: ``ENODEV``) or
    :meth:`stop` is called; :meth:`join` waits for the threads. The descriptor belongs to the
    caller, who closes it after :meth:`join`.
    """

    def __init__(self, fd: int, handlers: FuseHandlers, *, threads: int = 4, initialised: bool = False,
                 minor: int = KERNEL_MINOR) -> None:
        self.fd = fd
        self.handlers = handlers
        self.threads = max(1, threads)
        self.initialised = threading.Event()
        if initialised:
            self.initialised.set()
        self.minor = minor
        self.errors = 0
        #: answer requests the kernel re-sent after a takeover (``FUSE_UNIQUE_RESEND``) with EIO
        #: (failover policy ``flush``) instead of serving them
        self.flush_resent = False
        self._stopping = False
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        """Start the reader threads (daemon threads: they never keep the process alive)."""
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"fuse-session-{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def stop(self) -> None:
        """Ask the threads to end (they leave once the connection is unmounted or aborted)."""
        self._stopping = True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads; return whether all ended."""
        for t in self._workers:
            t.join(timeout)
        return not any(t.is_alive() for t in self._workers)

    # -- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        fd = self.fd
        buffer = bytearray(BUFSIZE)
        view = memoryview(buffer)
        while not self._stopping:
            try:
                n = os.readv(fd, [buffer])
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOENT:  # the request was interrupted before we read it
                    continue
                if exc.errno not in (errno.ENODEV, errno.EBADF):
                    log.warning("fuse session: reading /dev/fuse: %s", exc)
                return
            if n < _IN.size:
                continue
            length, opcode, unique, nodeid, _uid, _gid, _pid, _ext, _pad = _IN.unpack_from(buffer)
            body = view[_IN.size:min(length, n)]
            if self.flush_resent and unique & RESEND_BIT:
                if opcode not in NO_REPLY:
                    self._send(unique, -errno.EIO)
                continue
            try:
                reply = self._dispatch(opcode, nodeid, body)
            except OSError as exc:
                self._send(unique, -(exc.errno or errno.EIO))
                continue
            except Exception:
                self.errors += 1
                log.exception("fuse session: opcode %d on node %d failed", opcode, nodeid)
                self._send(unique, -errno.EIO)
                continue
            if opcode in NO_REPLY:
                continue
            if reply is None:
                self._send(unique, -errno.ENOSYS)
            else:
                self._send(unique, 0, reply)
            if opcode == DESTROY:
                return

    def _send(self, unique: int, error: int, payload: bytes | memoryview = b"") -> None:
        header = _OUT.pack(_OUT.size + (len(payload) if not error else 0), error, unique)
        try:
            if error or not payload:
                os.write(self.fd, header)
            else:
                os.writev(self.fd, [header, payload])
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENODEV, errno.EBADF):  # ENOENT: interrupted
                log.warning("fuse session: answering request %d: %s", unique, exc)

    def _dispatch(self, opcode: int, nodeid: int, body: memoryview) -> bytes | memoryview | None:
        h = self.handlers
        if opcode == READ:
            fh, offset, size = _READ_IN.unpack_from(body)
            return h.read(nodeid, fh, offset, size)
        if opcode == LOOKUP:
            name = bytes(body).split(b"\0", 1)[0]
            return _entry(h.lookup(nodeid, name))
        if opcode == GETATTR:
            return _ATTR_OUT.pack(TIMEOUT, 0, 0) + h.getattr(nodeid).pack()
        if opcode in NO_REPLY:
            return b""
        if opcode in (OPEN, OPENDIR):
            flags = struct.unpack_from("<I", body)[0]
            if opcode == OPENDIR:
                h.getattr(nodeid)
                return _OPEN_OUT.pack(0, 0, 0)
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
                raise OSError(errno.EROFS, "read-only")
            fh, open_flags = h.open(nodeid, flags)
            return _OPEN_OUT.pack(fh, open_flags, 0)
        if opcode == RELEASE:
            fh = struct.unpack_from("<Q", body)[0]
            h.release(nodeid, fh)
            return b""
        if opcode == RELEASEDIR:
            return b""
        if opcode == READDIR:
            _fh, offset, size = _READ_IN.unpack_from(body)
            return _dirents(h.readdir(nodeid), offset, size)
        if opcode == STATFS:
            total, files = h.statfs()
            blocks = (total + 4095) // 4096
            return _STATFS.pack(blocks, 0, 0, files, 0, 4096, 255, 4096, 0)
        if opcode == INIT:
            return self._init(body)
        if opcode == DESTROY:
            return b""
        return None

    def _init(self, body: memoryview) -> bytes:
        major, minor, max_readahead, flags = _INIT_IN.unpack_from(body)
        if major != KERNEL_VERSION:
            raise OSError(errno.EPROTO, f"FUSE protocol {major}.{minor} is not supported")
        self.minor = min(minor, KERNEL_MINOR)
        want = flags & (FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES)
        self.initialised.set()
        return _INIT_OUT.pack(KERNEL_VERSION, self.minor, max_readahead, want, 16, 12, 1 << 17, 1,
                              MAX_PAGES, 0, 0, 0, 0)


def _entry(attr: Attr) -> bytes:
    return _ENTRY.pack(attr.ino, 0, TIMEOUT, TIMEOUT, 0, 0) + attr.pack()


def _dirents(entries: Sequence[tuple[bytes, Attr]], offset: int, size: int) -> bytes:
    out = bytearray()
    for i in range(offset, len(entries)):
        name, attr = entries[i]
        rec = _DIRENT.pack(attr.ino, i + 1, len(name), stat.S_IFMT(attr.mode) >> 12) + name
        rec += b"\0" * (-len(rec) % 8)
        if len(out) + len(rec) > size:
            break
        out += rec
    return bytes(out)


# -- mounting -------------------------------------------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MNT_DETACH = 2


def mount_fuse(target: str, *, fsname: str, subtype: str, allow_other: bool = True) -> int:
    """Mount a FUSE filesystem at ``target`` (read-only, nosuid, nodev) and return its ``/dev/fuse``
    descriptor (close-on-exec). Raises OSError."""
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    try:
        st = os.stat(target)
        data = f"fd={fd},rootmode={stat.S_IFMT(st.st_mode):o},user_id=0,group_id=0,default_permissions"
        if allow_other:
            data += ",allow_other"
        rc = _libc.mount(fsname.encode(), target.encode(), f"fuse.{subtype}".encode(),
                         MS_RDONLY | MS_NOSUID | MS_NODEV, data.encode())
        if rc != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"mount fuse at {target}: {os.strerror(e)}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def umount(target: str, *, lazy: bool = False) -> None:
    """``umount2(target)``, ``MNT_DETACH`` when ``lazy``; raises OSError."""
    if _libc.umount2(target.encode(), MNT_DETACH if lazy else 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"umount {target}: {os.strerror(e)}")


def connection_id(mounted_root: str) -> int:
    """Return the FUSE connection number of the mount whose root is ``mounted_root`` (the name of
    its directory under ``/sys/fs/fuse/connections``)."""
    dev = os.stat(mounted_root).st_dev
    return (os.major(dev) << 20) | os.minor(dev)


def abort_connection(conn: int) -> bool:
    """Abort FUSE connection ``conn`` through fusectl (its pending and future requests fail);
    return whether it was aborted."""
    base = "/sys/fs/fuse/connections"
    if os.path.isdir(base) and not os.listdir(base):  # fusectl not mounted yet
        _libc.mount(b"fusectl", base.encode(), b"fusectl", 0, None)
    try:
        with open(os.path.join(base, str(conn), "abort"), "w") as fh:
            fh.write("1")
    except OSError:
        return False
    return True
