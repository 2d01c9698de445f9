"""Read, digest and compress small source files in worker processes, in batches.

On a tree of many small files the per-file work (open, fstat, read, close, digest, compress) is
the build's largest cost and runs in Python; worker processes (forked, so they share the
compressor and digester already chosen) do it for batches of files in parallel. The parent keeps
everything that decides the output -- deduplication, chunk numbering, blob order -- and consumes
the batches strictly in order, so the blob and bootstrap are byte-identical to a serial build.
At most a few batches are in flight: memory stays bounded whatever the tree's size.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from ..errors import BuildError
from ..interfaces import Compressor, Digester

__all__ = ["FileResult", "Pending", "SmallFileReader", "may_fork", "open_source_file", "read_small_file"]

#: ``(size, digest, stored bytes, compressed)`` of a file read, or the one-line error reading it
FileResult = tuple[int, bytes, bytes, bool] | str

#: files per batch and bytes per batch (whichever is reached first)
BATCH_FILES = 256
BATCH_BYTES = 4 << 20
#: batches in flight per worker
WINDOW_PER_WORKER = 4

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_source_file(path: bytes) -> int:
    """Open a source file found by the scan: no symlink followed, no blocking open of a file
    swapped for a fifo since; OSError(0, "no longer a regular file") when it is not one now."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "no longer a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small_file(path: bytes, size: int, digester: Digester, compressor: Compressor | None) -> FileResult:
    """Read at most ``size`` bytes of ``path`` (one chunk), digest and (if ``compressor``)
    compress them; keep the compressed form only when strictly smaller, as the blob writer does."""
    try:
        fd = open_source_file(path)
        try:
            parts: list[bytes] = []
            got = 0
            while got < size:
                part = os.read(fd, size - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
        finally:
            os.close(fd)
    except OSError as exc:
        return f"{os.fsdecode(path)}: cannot read: {exc.strerror or exc}"
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if not data:
        return 0, b"", b"", False
    digest = digester.digest(data)
    if compressor is not None:
        packed = compressor.compress(data)
        if len(packed) < len(data):
            return len(data), digest, packed, True
    return len(data), digest, data, False


# -- worker side (the plugin instances are inherited through fork) ------------------------------


def _read_batch(batch: Sequence[tuple[bytes, int]]) -> list[FileResult]:
    assert _worker is not None, "worker not initialised"
    digester, compressor = _worker
    return [read_small_file(path, size, digester, compressor) for path, size in batch]


_worker: tuple[Digester, Compressor | None] | None = None


def _serve(tasks: Connection, results: Connection) -> None:
    """A worker's loop: a batch in, its results out, until ``None`` or the parent is gone."""
    while True:
        try:
            batch = tasks.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        try:
            reply: tuple[str, Any] = ("ok", _read_batch(batch))
        except BaseException as exc:  # handed to the parent, which raises it
            reply = ("error", f"a worker process reading the source files failed: {exc!r}")
        try:
            results.send(reply)
        except OSError:
            return


# -- parent side ----------------------------------------------------------------------------------


def may_fork() -> bool:
    """Whether this process may fork workers: only when it runs no other thread (the CLI), since a
    library caller's other threads may hold locks a forked child would wait on for ever."""
    return threading.active_count() == 1


class Pending:
    """A batch handed to one worker; its results come back in the order batches were given."""

    __slots__ = ("_reader", "worker")

    def __init__(self, reader: SmallFileReader, worker: int) -> None:
        self._reader, self.worker = reader, worker

    def ready(self) -> bool:
        """Whether the worker's next results (this batch's, when taken in order) have arrived."""
        return self._reader._results[self.worker].poll()


class SmallFileReader:
    """``workers`` forked processes reading batches of small files, each over its own two pipes
    (no helper threads in this process: a ``multiprocessing.Pool``'s three threads took a fifth of
    the parent's CPU time on 100k small files, and the GIL hand-offs slowed its main thread).

    :meth:`submit` hands a batch to the next worker in turn, :meth:`result` waits for a batch's
    results -- batches must be taken in the order submitted; :meth:`close` ends the workers
    (``terminate`` after an error). A worker that dies (killed, out of memory) is noticed within
    a second: the wait ends with a BuildError. :attr:`max_task_bytes` bounds one batch's paths so
    that batches waiting in a worker's pipe never fill it (a full one could deadlock with the
    worker's results)."""

    def __init__(self, workers: int, digester: Digester, compressor: Compressor | None) -> None:
        global _worker
        #: batches a caller should keep in flight at most
        self.window = max(2, workers * WINDOW_PER_WORKER)
        per_worker = -(-self.window // workers) + 2
        self._pids: list[int] = []
        self._tasks: list[Connection] = []
        self._results: list[Connection] = []
        self._next = 0
        capacity = 1 << 30
        try:
            for _ in range(workers):
                task_r, task_w = os.pipe()
                res_r, res_w = os.pipe()
                capacity = min(capacity, _pipe_capacity(task_w))
                _pipe_capacity(res_w)  # results of MiBs: fewer reads, fewer wake-ups on both sides
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child leaves through os._exit
                    try:
                        for conn in (*self._tasks, *self._results):
                            conn.close()  # the other workers' pipes: their ends stay with the parent
                        os.close(task_w)
                        os.close(res_r)
                        _worker = (digester, compressor)
                        _serve(Connection(task_r, writable=False), Connection(res_w, readable=False))
                    finally:
                        os._exit(0)
                os.close(task_r)
                os.close(res_w)
                self._pids.append(pid)
                self._tasks.append(Connection(task_w, readable=False))
                self._results.append(Connection(res_r, writable=False))
        except BaseException:
            self.close(terminate=True)
            raise
        #: pickled size one batch of paths may take (its pipe holds every batch waiting for the worker)
        self.max_task_bytes = max(4096, capacity // per_worker - 4096)

    def submit(self, batch: Sequence[tuple[bytes, int]]) -> Pending:
        """Start reading ``(path, size)`` of each file of ``batch``."""
        w = self._next
        self._next = (w + 1) % len(self._tasks)
        try:
            self._tasks[w].send(list(batch))
        except OSError:
            raise self._died() from None
        return Pending(self, w)

    def result(self, pending: Pending) -> list[FileResult]:
        """Wait for a batch's results (BuildError when its worker died meanwhile)."""
        conn = self._results[pending.worker]
        while not conn.poll(_LIVENESS_CHECK):
            if self._exited(pending.worker):
                if conn.poll():  # it finished this batch before dying
                    break
                raise self._died()
        try:
            status, value = conn.recv()
        except (EOFError, OSError):
            raise self._died() from None
        if status != "ok":
            raise BuildError(value)
        results: list[FileResult] = value
        return results

    def close(self, *, terminate: bool = False) -> None:
        """Stop the workers: after the last batch, or at once with ``terminate``."""
        for conn in self._tasks:
            if not terminate:
                try:
                    conn.send(None)
                except OSError:
                    pass
            conn.close()
        for pid in self._pids:
            if pid <= 0:  # reaped already
                continue
            if terminate:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        for conn in self._results:
            conn.close()
        self._tasks, self._results, self._pids = [], [], []

    def _exited(self, worker: int) -> bool:
        if self._pids[worker] <= 0:  # reaped already (waitpid(-1) would reap any other child)
            return True
        try:
            pid, _status = os.waitpid(self._pids[worker], os.WNOHANG)
        except ChildProcessError:
            return True
        if pid:
            self._pids[worker] = -1  # reaped: nothing to wait for at close
        return pid != 0

    @staticmethod
    def _died() -> BuildError:
        return BuildError("a worker process reading the source files died (killed, or out of memory?)")


#: seconds between checks that the workers are alive while waiting for a batch
_LIVENESS_CHECK = 0.5


def _pipe_capacity(fd: int) -> int:
    """Grow a pipe to 1 MiB where the system allows it; return its capacity."""
    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except OSError:
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
