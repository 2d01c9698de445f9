"""Read, digest and compress small source files in worker processes, in batches.

On a tree of many small files the per-file work (open, fstat, read, close, digest, compress) is
the build's largest cost and runs in Python; worker processes (forked, so they share the
compressor and digester already chosen) do it for batches of files in parallel. The parent keeps
everything that decides the output -- deduplication, chunk numbering, blob order -- and consumes
the batches strictly in order, so the blob and bootstrap are byte-identical to a serial build.
At most a few batches are in flight: memory stays bounded whatever the tree's size.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from collections.abc import Sequence
from multiprocessing.pool import AsyncResult, Pool
from typing import TypeAlias

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


# -- worker side (state set by the pool initializer; fork keeps the plugin instances) --------------

_worker: tuple[Digester, Compressor | None] | None = None


def _init_worker(digester: Digester, compressor: Compressor | None) -> None:
    global _worker
    _worker = (digester, compressor)


def _read_batch(batch: Sequence[tuple[bytes, int]]) -> list[FileResult]:
    assert _worker is not None, "worker not initialised"
    digester, compressor = _worker
    return [read_small_file(path, size, digester, compressor) for path, size in batch]


# -- parent side ----------------------------------------------------------------------------------


def may_fork() -> bool:
    """Whether this process may fork workers: only when it runs no other thread (the CLI), since a
    library caller's other threads may hold locks a forked child would wait on for ever."""
    return threading.active_count() == 1


#: a batch's results, once the worker has them
Pending: TypeAlias = "AsyncResult[list[FileResult]]"


class SmallFileReader:
    """A pool of ``workers`` forked processes reading batches of small files.

    :meth:`submit` hands a batch over, :meth:`result` waits for its results; :meth:`close` ends the
    pool (``terminate`` after an error). A worker that dies (killed, out of memory) is noticed
    within a second: its batch would never finish, so the wait ends with a BuildError."""

    def __init__(self, workers: int, digester: Digester, compressor: Compressor | None) -> None:
        ctx = multiprocessing.get_context("fork")
        before = _children()
        self._pool: Pool = ctx.Pool(workers, initializer=_init_worker, initargs=(digester, compressor))
        self._workers = _children() - before
        #: batches a caller should keep in flight at most
        self.window = max(2, workers * WINDOW_PER_WORKER)

    def submit(self, batch: Sequence[tuple[bytes, int]]) -> Pending:
        """Start reading ``(path, size)`` of each file of ``batch``."""
        return self._pool.apply_async(_read_batch, (batch,))

    def result(self, pending: Pending) -> list[FileResult]:
        """Wait for a batch's results (BuildError when a worker died meanwhile)."""
        while True:
            try:
                return pending.get(timeout=_LIVENESS_CHECK)
            except multiprocessing.TimeoutError:
                if not self._workers <= _children():
                    raise BuildError(
                        "a worker process reading the source files died (killed, or out of memory?)"
                    ) from None

    def close(self, *, terminate: bool = False) -> None:
        """Stop the workers: after the last batch, or at once with ``terminate``."""
        if terminate:
            self._pool.terminate()
        else:
            self._pool.close()
        self._pool.join()


#: seconds between checks that the workers are alive while waiting for a batch
_LIVENESS_CHECK = 0.5


def _children() -> set[int]:
    """PIDs of this process's live child processes."""
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}
