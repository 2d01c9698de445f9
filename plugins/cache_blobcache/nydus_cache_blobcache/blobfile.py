"""One cached blob: ``<blob_id>.blob.data`` (the uncompressed blob image) plus its journal.

Write order of :meth:`BlobFile.put_many` (what makes ``kill -9`` at any moment safe):
``pwrite`` every chunk at its uncompressed offset -> ``fdatasync`` the data file -> append the
chunks' READY records to the journal. A record therefore never exists before its bytes are on
disk; a crash in between only loses the record, and the chunk is fetched again.

Eviction runs the other way round: EVICTED records -> ``fdatasync`` the journal -> bump the
generation -> punch holes. A reader that raced with an eviction sees the generation change and
retries, so it never returns bytes from a punched range.

Processes share a blob through ``flock`` on the data file: everyone holds a shared lock while the
blob is open; only a holder of the exclusive lock (nobody else has the blob open) may repair or
compact the journal, punch holes, or delete the files (``nydus cache gc``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from nydus_core.errors import CacheError
from nydus_core.interfaces import BlobCache, Digester
from nydus_core.rafs.model import BlobInfo, ChunkInfo

from .journal import OP_EVICTED, TAG_SIZE, ChunkJournal, encode_record
from .readymap import ReadyMap

__all__ = ["BlobFile", "Syncer", "aligned_size", "punch_hole"]

log = logging.getLogger(__name__)

BLOCK = 4096
#: a close that waits this many seconds for the cache sync is logged as slow
SLOW_SYNC = 1.0
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc: Any = None


def aligned_size(size: int) -> int:
    """Return ``size`` rounded up to whole 4 KiB blocks (what a chunk occupies on disk)."""
    return (size + BLOCK - 1) & ~(BLOCK - 1)


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free the whole 4 KiB blocks inside ``[offset, offset + length)``; False if unsupported."""
    global _libc
    start = aligned_size(offset)
    end = (offset + length) & ~(BLOCK - 1)
    if end <= start:
        return True
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    rc = _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, start, end - start)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EOPNOTSUPP, errno.ENOSYS):
            return False
        raise OSError(err, os.strerror(err))
    return True


class Syncer:
    """Group commit for many blobs: one thread makes written chunks durable and records them, so
    readers never wait for ``fdatasync``; chunks written while a sync runs go with the next one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, BlobFile] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="nydus-blobcache-sync", daemon=True)
        self._thread.start()

    def schedule(self, bf: BlobFile) -> None:
        """Ask for ``bf``'s pending chunks to be committed soon."""
        with self._cond:
            if self._closed:
                return
            self._due[id(bf)] = bf
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due and not self._closed:
                    self._cond.wait()
                if not self._due and self._closed:
                    return
                due, self._due = list(self._due.values()), {}
            for bf in due:
                try:
                    bf.commit()
                except Exception as exc:  # keep syncing the other blobs
                    log.warning("%s: commit failed: %s", bf.data_path, exc)

    def close(self) -> None:
        """Commit what is due and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class BlobFile(BlobCache):
    """The cache of one blob. Thread-safe; shared by every pipeline of this process that reads it."""

    def __init__(self, work_dir: str, blob: BlobInfo, *, validate: bool, digester: Digester | None,
                 on_put: Callable[[BlobFile, list[tuple[int, int, int]]], None] | None = None,
                 on_hit: Callable[[BlobFile, int], None] | None = None,
                 syncer: Syncer | None = None) -> None:
        self.blob = blob
        self.blob_id = blob.blob_id
        self.data_path: str = os.path.join(work_dir, f"{blob.blob_id}.blob.data")
        self.map_path = os.path.join(work_dir, f"{blob.blob_id}.chunk_map")
        self.validate = validate
        self.digester = digester
        self._on_put = on_put
        self._on_hit = on_hit
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._commit_lock = threading.Lock()
        self.syncer: Syncer | None = syncer
        self.generation = 0
        self.refs = 1
        self.punch_supported = True
        self.release: Callable[[BlobFile], None] | None = None
        self.fd, exclusive = self._open_data()
        try:
            try:
                self.journal, st = ChunkJournal.open(
                    self.map_path, exclusive=exclusive,
                    uncompressed_size=blob.uncompressed_size, chunk_count=blob.chunk_count,
                )
            except OSError as exc:
                raise CacheError(
                    f"{self.map_path}: cannot open the chunk map: {exc.strerror or exc}") from None
            if exclusive:
                fcntl.flock(self.fd, fcntl.LOCK_SH)  # downgrade: others may share the blob now
            if self.journal is None:
                log.warning("%s: chunk map unreadable and in use by another process; "
                            "cache for this blob is not persisted", self.map_path)
            self._ready: ReadyMap = st.ready
            if self._ready.chunk_count != blob.chunk_count:
                self._ready = ReadyMap(blob.chunk_count)
                for off, size, tag, index in st.ready.entries():
                    self._ready.add(off, size, tag, index)
            # written but not yet durable and recorded (see put_many): offset -> (size, tag, index)
            self._pending: dict[int, tuple[int, bytes, int]] = {}
            if blob.uncompressed_size and os.fstat(self.fd).st_size < blob.uncompressed_size:
                os.ftruncate(self.fd, blob.uncompressed_size)
        except BaseException:
            os.close(self.fd)
            raise

    # -- opening --------------------------------------------------------------------------------

    def _open_data(self) -> tuple[int, bool]:
        """Open and lock the data file: exclusively when nobody else has it open, else shared.
        Makes sure it is still the file at its path once locked (a gc may have removed it)."""
        for _ in range(10):
            try:
                fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise CacheError(
                    f"{self.data_path}: cannot open the cache file: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                exclusive = True
            except BlockingIOError:
                fcntl.flock(fd, fcntl.LOCK_SH)
                exclusive = False
            if _same_file(fd, self.data_path):
                return fd, exclusive
            os.close(fd)  # removed by a gc between open and lock: open the new one
        raise CacheError(f"{self.data_path}: the cache file keeps being removed while opening it")

    # -- BlobCache --------------------------------------------------------------------------------

    def _entry_ok(self, chunk: ChunkInfo) -> bool:
        if self._ready.matches(chunk.uncompressed_offset, chunk.uncompressed_size, chunk.block_id,
                               chunk.index):
            return True
        r = self._pending.get(chunk.uncompressed_offset) if self._pending else None
        return r is not None and r[0] == chunk.uncompressed_size and chunk.block_id.startswith(r[1])

    def is_ready(self, chunk: ChunkInfo) -> bool:
        """Return whether the chunk's bytes are in the cache."""
        return self._entry_ok(chunk)

    def read_range(self, chunk: ChunkInfo, start: int, length: int) -> bytes | None:
        """Return ``length`` bytes at ``start`` within ``chunk``, or None on a miss (one ``pread``;
        with ``validate`` the whole chunk is read and its digest checked)."""
        while True:
            gen = self.generation
            if not self._entry_ok(chunk):
                return None
            try:
                if self.validate:
                    data = os.pread(self.fd, chunk.uncompressed_size, chunk.uncompressed_offset)
                else:
                    data = os.pread(self.fd, length, chunk.uncompressed_offset + start)
            except OSError as exc:
                raise CacheError(f"{self.data_path}: read failed: {exc.strerror or exc}") from None
            if gen != self.generation:
                continue  # an eviction ran meanwhile: look again
            if self.validate:
                if (len(data) != chunk.uncompressed_size or self.digester is None
                        or self.digester.digest(data) != chunk.block_id):
                    log.warning("%s: chunk %d at %d fails its digest in the cache; fetching it again",
                                self.data_path, chunk.index, chunk.uncompressed_offset)
                    self.forget([chunk])
                    return None
                data = data[start:start + length] if (start or length != len(data)) else data
            elif len(data) != length:
                return None  # the file was cut short behind our back
            if self._on_hit is not None:
                self._on_hit(self, chunk.uncompressed_offset)
            return data

    def get(self, chunk: ChunkInfo) -> bytes | None:
        """Return the whole chunk, or None."""
        return self.read_range(chunk, 0, chunk.uncompressed_size)

    def put(self, chunk: ChunkInfo, data: bytes) -> None:
        """Store one verified chunk and mark it ready."""
        self.put_many([(chunk, data)])

    def put_many(self, items: Sequence[tuple[ChunkInfo, bytes]]) -> None:
        """Store verified chunks: write them all, then (after one ``fdatasync``) mark them ready.

        With a :class:`Syncer` the sync and the journal records happen on its thread (group
        commit) and this returns once the bytes are written; until then the chunks are served from
        the file (the bytes are there) but not yet recorded as ready on disk.
        """
        todo = [(c, d) for c, d in items if not self._entry_ok(c)]
        if not todo:
            return
        try:
            for c, data in todo:
                if len(data) != c.uncompressed_size:
                    raise CacheError(f"{self.data_path}: chunk {c.index}: got {len(data)} bytes, "
                                     f"expected {c.uncompressed_size}")
                os.pwrite(self.fd, data, c.uncompressed_offset)
        except OSError as exc:
            raise CacheError(f"{self.data_path}: write failed: {exc.strerror or exc}") from None
        with self._lock:
            for c, _ in todo:
                if self._ready.get(c.uncompressed_offset, c.index) is None:
                    self._pending[c.uncompressed_offset] = (c.uncompressed_size, c.block_id[:TAG_SIZE],
                                                            c.index)
        if self.syncer is not None:
            self.syncer.schedule(self)
        else:
            self.commit()

    def commit(self) -> None:
        """Make pending chunks durable (``fdatasync``) and record them ready in the journal."""
        with self._commit_lock:
            with self._lock:
                batch = dict(self._pending)
            if not batch:
                return
            try:
                if self.fd >= 0:
                    os.fdatasync(self.fd)
            except OSError as exc:
                log.warning("%s: sync failed, chunks not recorded: %s", self.data_path, exc)
                with self._lock:
                    for off in batch:
                        self._pending.pop(off, None)
                    self._idle.notify_all()
                return
            added: list[tuple[int, int, int]] = []
            with self._lock:
                records = []
                for off, entry in batch.items():
                    if self._pending.get(off) != entry:
                        continue  # forgotten meanwhile
                    del self._pending[off]
                    self._ready.add(off, entry[0], entry[1], entry[2])
                    records.append(encode_record(off, entry[0], entry[1], index=entry[2]))
                    added.append((off, entry[0], entry[2]))
                if self.journal is not None and records:
                    try:
                        self.journal.append(records)
                    except OSError as exc:
                        log.warning("%s: cannot record ready chunks: %s", self.map_path, exc)
            if added and self._on_put is not None:
                self._on_put(self, added)  # may evict: still under the commit lock, see flush()
            with self._lock:
                if not self._pending:
                    self._idle.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every written chunk is durable and recorded; False on timeout."""
        if self.syncer is None:
            self.commit()
            return True
        self.syncer.schedule(self)
        with self._lock:
            if not self._idle.wait_for(lambda: not self._pending, timeout):
                return False
        with self._commit_lock:  # the last commit's follow-up (eviction) is done too
            return True

    # -- eviction ---------------------------------------------------------------------------------

    def forget(self, chunks: Sequence[ChunkInfo]) -> None:
        """Mark chunks not ready without touching their bytes (used when a cached chunk is bad)."""
        with self._lock:
            records = []
            for c in chunks:
                self._pending.pop(c.uncompressed_offset, None)
                if self._ready.pop(c.uncompressed_offset, c.index) is not None:
                    records.append(encode_record(c.uncompressed_offset, c.uncompressed_size, b"",
                                                 OP_EVICTED, index=c.index))
            self.generation += 1
            if self.journal is not None and records:
                self.journal.append(records)

    def can_punch(self) -> bool:
        """Return whether this process alone has the blob open (so it may free its blocks)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(self.fd, fcntl.LOCK_SH)
        return True

    def evict(self, chunks: Sequence[tuple[int, int]]) -> int:
        """Unmark the chunks at ``(offset, chunk index)`` and free their blocks; return the bytes
        freed (4 KiB-aligned sizes). The caller checked :meth:`can_punch`."""
        victims: list[tuple[int, int]] = []
        with self._lock:
            records = []
            for off, index in chunks:
                r = self._ready.pop(off, index)
                if r is not None:
                    victims.append((off, r[0]))
                    records.append(encode_record(off, r[0], b"", OP_EVICTED, index=index))
            if not victims:
                return 0
            if self.journal is not None:
                self.journal.append(records)
                self.journal.sync()
            self.generation += 1
        freed = 0
        for off, size in victims:
            if self.punch_supported:
                try:
                    self.punch_supported = punch_hole(self.fd, off, size)
                except OSError as exc:
                    log.warning("%s: cannot free cached chunk at %d: %s", self.data_path, off, exc)
            freed += aligned_size(size)
        return freed

    # -- accounting -------------------------------------------------------------------------------

    def ready_offsets(self) -> list[tuple[int, int, int]]:
        """Return ``(uncompressed_offset, size, chunk index or -1)`` of every ready chunk."""
        with self._lock:
            return [(off, size, index) for off, size, _tag, index in self._ready.entries()]

    def ready_count(self) -> int:
        """Return the number of ready chunks (including written ones not yet recorded)."""
        return len(self._ready) + len(self._pending)

    def used_bytes(self) -> int:
        """Return the 4 KiB-aligned bytes the ready chunks occupy."""
        with self._lock:
            return sum(aligned_size(size) for _off, size, _tag, _index in self._ready.entries())

    def close(self) -> None:
        """Give this user's reference back; the files close with the last one."""
        if self.release is not None:
            self.release(self)
        else:
            self.shutdown()

    def shutdown(self) -> None:
        """Record what is pending, then close the files.

        Chunks written but not yet durable (the sync thread's ``fdatasync`` may still be running)
        are synced and recorded first, however long the disk takes: a clean stop loses nothing
        that was served. That wait is logged, so a slow stop can be told from a hung one.
        """
        if self.fd >= 0:
            waiting = len(self._pending)
            t0 = time.monotonic()
            if waiting:
                log.info("%s: making %d written chunk(s) durable before closing", self.data_path,
                         waiting)
            self.commit()
            took = time.monotonic() - t0
            if took >= SLOW_SYNC:
                log.warning("%s: the cache sync at close took %.1f s (a busy disk)", self.data_path,
                            took)
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self.fd >= 0:
            try:
                os.utime(self.map_path)  # last use, for `nydus cache gc` across processes
            except OSError:
                pass
            os.close(self.fd)
            self.fd = -1
