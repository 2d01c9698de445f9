"""Output files of a build: written to a temporary name beside the target and renamed when complete
(so a failed build leaves no half-written bootstrap or blob), except pipes and character devices,
which are written directly.

A temporary file (``.NAME.tmp-PID-ID``) holds an exclusive ``flock`` for as long as it is written.
A build killed with SIGKILL cannot remove its own: the next output into the same directory removes
every such file whose lock is free (:func:`remove_stale_temporaries`) -- never by PID, which may be
reused, so a file another live build is writing is never touched."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import BuildError

log = logging.getLogger("nydus.builder")

_TEMPORARY = re.compile(r"^\..+\.tmp-\d+-[0-9a-f]+$")


def _same_file(fd: int, path: Path | str) -> bool:
    try:
        a, b = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def remove_stale_temporaries(directory: Path) -> int:
    """Remove the temporary outputs in ``directory`` that no live build holds locked; return how many."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if not _TEMPORARY.match(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # being written by a live build
            if _same_file(fd, entry.path):
                os.unlink(entry.path)
                removed += 1
                log.info("removed %s, left behind by a build that did not finish", entry.path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def _create_locked(path: Path) -> BinaryIO:
    """Create ``path`` and hold an exclusive flock on it; retry if a sweep removed it before the lock."""
    for _ in range(5):
        f = open(path, "wb")  # noqa: SIM115 - returned to the caller, closed in commit/discard
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        if _same_file(f.fileno(), path):
            return f
        f.close()  # swept between create and lock (its lock looked free): make it again
    raise BuildError(f"{path}: cannot create a temporary output (removed as fast as it is created)")


def _is_stream(path: Path) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


class OutputFile:
    """A file being written; :meth:`commit` moves it into place, :meth:`discard` removes it.

    ``path`` may be ``None`` with ``directory`` set: the final name is given to :meth:`commit`
    (blobs in ``--blob-dir`` are named by their id).
    """

    def __init__(self, path: Path | None, *, directory: Path | None = None, what: str = "output") -> None:
        self.what = what
        self.final: Path | None = path
        self.stream = path is not None and _is_stream(path)
        where = path.parent if path is not None else directory
        assert where is not None
        try:
            where.mkdir(parents=True, exist_ok=True)
            if self.stream:
                assert path is not None
                self.tmp = path
                self.file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in commit/discard
            else:
                stem = path.name if path is not None else "blob"
                remove_stale_temporaries(where)
                self.tmp = where / f".{stem}.tmp-{os.getpid()}-{id(self):x}"
                self.file = _create_locked(self.tmp)
        except OSError as exc:
            raise BuildError(f"{path or directory}: cannot write {what}: {exc.strerror or exc}") from None

    def identity(self) -> tuple[int, int] | None:
        """``(st_dev, st_ino)`` of the file being written (so a walk can skip it)."""
        try:
            st = os.fstat(self.file.fileno())
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def commit(self, final: Path | None = None) -> Path:
        """Close and move the file to its final name; return that name."""
        target = final or self.final
        assert target is not None
        try:
            if not self.stream:
                # data on disk before the name: a crash never leaves a short blob under its id
                self.file.flush()
                os.fsync(self.file.fileno())
            self.file.close()
            if not self.stream:
                os.replace(self.tmp, target)
                _fsync_dir(target.parent)
        except OSError as exc:
            raise BuildError(f"{target}: cannot write {self.what}: {exc.strerror or exc}") from None
        return target

    def discard(self) -> None:
        """Close and remove the temporary file (a stream is just closed)."""
        try:
            self.file.close()
        except OSError:
            pass  # what could not be flushed is being thrown away anyway
        finally:
            if not self.stream:
                try:
                    os.unlink(self.tmp)
                except FileNotFoundError:
                    pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, what: str) -> Path:
    """Write ``data`` to ``path`` atomically (or straight into a pipe)."""
    out = OutputFile(path, what=what)
    try:
        out.file.write(data)
    except OSError as exc:
        out.discard()
        raise BuildError(f"{path}: cannot write {what}: {exc.strerror or exc}") from None
    except BaseException:
        out.discard()
        raise
    return out.commit()
