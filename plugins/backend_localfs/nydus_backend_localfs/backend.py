"""The localfs backend: blobs are files named by blob id in ``dir`` (then ``alt_dirs``), or one
``blob_file`` served for every id, as upstream nydusd's ``localfs`` backend does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from nydus_core.errors import (
    BackendError,
    BlobNotFoundError,
    ConfigError,
    PermissionDeniedError,
    UnsupportedOperationError,
)
from nydus_core.interfaces import Backend

__all__ = ["LocalFsBackend"]

_COPY_SIZE = 1 << 20
_MAX_PREAD = 1 << 30
_SINGLE_FILE = ""  # fd-cache key used in blob_file mode: every id is the same file


def _error(exc: OSError, path: str, blob_id: str, *, writing: bool = False) -> BackendError:
    """Map an OSError on ``path`` to the matching BackendError, naming the file."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and not writing:
        return BlobNotFoundError(f"localfs: blob {blob_id} not found: {path}: {reason}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDeniedError(f"localfs: blob {blob_id}: {path}: permission denied")
    return BackendError(f"localfs: blob {blob_id}: {path}: {reason}")


class LocalFsBackend(Backend):
    """Blobs in local files, read with ``pread`` on one cached file descriptor per blob.

    Config keys (upstream's): ``dir``, ``blob_file`` (one of the two is required) and ``alt_dirs``.
    Thread-safe. :meth:`write` stores blobs atomically in ``dir``.
    """

    name = "localfs"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(self.validate_config(config))
        self.dir: str = self.config["dir"]
        self.blob_file: str = self.config["blob_file"]
        self.alt_dirs: list[str] = self.config["alt_dirs"]
        self._fds: dict[str, tuple[int, str]] = {}
        self._retired: list[int] = []  # fds of replaced blobs; closed by close(), never while in use
        self._lock = threading.Lock()

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check the keys and fill defaults: ``dir`` and ``blob_file`` default to ``""``,
        ``alt_dirs`` to ``[]``. Raise ConfigError naming the key at fault."""
        if not isinstance(config, Mapping):
            raise ConfigError(f"localfs backend config must be an object, not {type(config).__name__}")
        out = dict(config)
        for key in ("dir", "blob_file"):
            value = out.get(key) or ""
            if not isinstance(value, str | os.PathLike):
                raise ConfigError(f"must be a path string, not {type(value).__name__}", key=key)
            out[key] = os.fspath(value)
        if not out["dir"] and not out["blob_file"]:
            raise ConfigError("the localfs backend needs 'dir' or 'blob_file' (one of the two)", key="dir")
        alt_dirs = out.get("alt_dirs") or []
        if not isinstance(alt_dirs, list | tuple) or not all(
            isinstance(d, str | os.PathLike) for d in alt_dirs
        ):
            raise ConfigError("must be a list of directory paths", key="alt_dirs")
        out["alt_dirs"] = [os.fspath(d) for d in alt_dirs]
        return out

    # -- blob lookup -----------------------------------------------------------------------------

    @staticmethod
    def blob_name(blob_id: str) -> str:
        """Return the file name of blob ``blob_id`` (without a ``sha256:`` prefix)."""
        name = blob_id.removeprefix("sha256:")
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise BlobNotFoundError(f"localfs: invalid blob id {blob_id!r} (must be a file name)")
        return name

    def candidates(self, blob_id: str) -> list[str]:
        """Return the paths where blob ``blob_id`` may be, in lookup order."""
        name = self.blob_name(blob_id)
        if self.blob_file:
            return [self.blob_file]
        return [os.path.join(d, name) for d in [self.dir, *self.alt_dirs] if d]

    def _open(self, blob_id: str) -> tuple[int, str]:
        key = _SINGLE_FILE if self.blob_file else self.blob_name(blob_id)
        with self._lock:
            cached = self._fds.get(key)
            if cached is not None:
                return cached
            paths = self.candidates(blob_id)
            for path in paths:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError as exc:
                    raise _error(exc, path, blob_id) from None
                mode = os.fstat(fd).st_mode
                if not stat.S_ISREG(mode):
                    os.close(fd)
                    raise BackendError(f"localfs: blob {blob_id}: {path} is not a regular file")
                self._fds[key] = (fd, path)
                return fd, path
        missing_dirs = [d for d in [self.dir, *self.alt_dirs] if d and not os.path.isdir(d)]
        note = ""
        if missing_dirs and not self.blob_file:
            note = f" (missing directories: {', '.join(missing_dirs)})"
        raise BlobNotFoundError(f"localfs: blob {blob_id} not found: looked for {', '.join(paths)}{note}")

    # -- Backend ---------------------------------------------------------------------------------

    def size(self, blob_id: str) -> int:
        """Return the size of the blob file."""
        fd, path = self._open(blob_id)
        try:
            return os.fstat(fd).st_size
        except OSError as exc:
            raise _error(exc, path, blob_id) from None

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset`` (fewer at the end of the blob, none past it)."""
        fd, path = self._open(blob_id)
        return self._pread(fd, path, blob_id, offset, length)

    def readv(self, blob_id: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Read several ranges of one blob (one descriptor lookup for all of them)."""
        fd, path = self._open(blob_id)
        return [self._pread(fd, path, blob_id, off, n) for off, n in ranges]

    def _pread(self, fd: int, path: str, blob_id: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise BackendError(f"localfs: blob {blob_id}: invalid range offset={offset} length={length}")
        try:
            length = min(length, max(0, os.fstat(fd).st_size - offset))
            if length == 0:
                return b""
            data = os.pread(fd, min(length, _MAX_PREAD), offset)
            if len(data) == length or not data:
                return data
            parts = [data]
            got = len(data)
            while got < length:
                more = os.pread(fd, min(length - got, _MAX_PREAD), offset + got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            return b"".join(parts)
        except OSError as exc:
            raise _error(exc, path, blob_id) from None

    def exists(self, blob_id: str) -> bool:
        """Return whether the blob file exists (and can be opened)."""
        try:
            self._open(blob_id)
        except BlobNotFoundError:
            return False
        return True

    def write(self, blob_id: str, stream: BinaryIO, size: int | None = None) -> None:
        """Store the bytes of ``stream`` as ``<dir>/<blob id>``: temporary file, fsync, rename.

        A stream that does not hold exactly ``size`` bytes (when given) stores nothing.
        """
        if not self.dir:
            raise UnsupportedOperationError(
                "localfs: cannot store blobs with only 'blob_file' configured (set 'dir')"
            )
        name = self.blob_name(blob_id)
        target = os.path.join(self.dir, name)
        tmp = ""
        try:
            os.makedirs(self.dir, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name[:16]}.", suffix=".partial", dir=self.dir)
            with os.fdopen(fd, "wb") as f:
                written = 0
                while buf := stream.read(_COPY_SIZE):
                    f.write(buf)
                    written += len(buf)
                if size is not None and written != size:
                    raise BackendError(
                        f"localfs: blob {blob_id}: stream gave {written} bytes, expected {size}; "
                        "nothing stored"
                    )
                f.flush()
                os.fchmod(f.fileno(), 0o644)
                os.fsync(f.fileno())
            os.replace(tmp, target)
            tmp = ""
            dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise _error(exc, exc.filename or target, blob_id, writing=True) from None
        finally:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        with self._lock:
            old = self._fds.pop(name, None)
            if old is not None:
                self._retired.append(old[0])

    def close(self) -> None:
        """Close every cached file descriptor (the backend reopens files if used again)."""
        with self._lock:
            fds = [fd for fd, _ in self._fds.values()] + self._retired
            self._fds.clear()
            self._retired = []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
