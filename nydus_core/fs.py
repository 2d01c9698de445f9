"""The library API: a Nydus image as a read-only filesystem in Python, no FUSE and no root.

>>> with open_fs("image.boot", "nydusd.json") as fs:          # doctest: +SKIP
...     fs.listdir("/etc")
...     with fs.open("/etc/os-release") as f:
...         text = f.read()

Everything is lazy: the bootstrap is mapped and decoded on demand, file data is fetched chunk by
chunk through the config's backend and cache (and prefetched per its ``fs_prefetch`` section).
Thread-safe: one :class:`RafsFS` may serve many threads; each :class:`RafsFile` has its own position
(guarded by a lock). Errors about paths are the usual ``OSError`` subclasses carrying the path
(``FileNotFoundError``, ``NotADirectoryError``...); data errors are :class:`~nydus_core.errors.NydusError`
(an :class:`~nydus_core.errors.IntegrityError` names the blob and chunk).
"""

from __future__ import annotations

import errno
import io
import os
import stat as statmod
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .config import NydusConfig, load_config, parse_config
from .errors import ConfigError, UsageError
from .interfaces import Backend, CachePolicy, Prefetcher, PrefetchRequest
from .rafs.image import RafsImage, open_image
from .rafs.model import InodeAttrs
from .storage import AccessPattern, ReadPipeline, resolve_blob_ids
from .storage.prefetch import choose_prefetcher, prefetch_settings

__all__ = ["RafsFS", "RafsFile", "open_fs", "open_metadata"]

_MAX_SYMLINKS = 40
#: Entries kept in the lookup caches before they are dropped and refilled.
_DCACHE_MAX = 1 << 17
#: Directories with at most this many entries are listed in one pass on their first lookup.
_BULK_DIR_MAX = 4096
PathLike = str | bytes | os.PathLike[str]


def _fspath(path: PathLike) -> bytes:
    p = os.fsencode(path)
    return p if p.startswith(b"/") else b"/" + p


def _err(code: int, path: bytes) -> OSError:
    cls = {errno.ENOENT: FileNotFoundError, errno.ENOTDIR: NotADirectoryError,
           errno.EISDIR: IsADirectoryError}.get(code, OSError)
    return cls(code, os.strerror(code), os.fsdecode(path))


def _stat_result(a: InodeAttrs) -> os.stat_result:
    ns = a.mtime * 1_000_000_000 + a.mtime_nsec
    t = ns / 1e9
    return os.stat_result(
        (a.mode, a.ino, 0, a.nlink, a.uid, a.gid, a.size, int(t), a.mtime, a.mtime),
        {"st_atime": t, "st_mtime": t, "st_ctime": t, "st_atime_ns": ns, "st_mtime_ns": ns,
         "st_ctime_ns": ns, "st_blksize": 4096, "st_blocks": (a.size + 511) // 512, "st_rdev": a.rdev},
    )


class RafsFile(io.RawIOBase):
    """A read-only file of a :class:`RafsFS` (binary, seekable; ``pread`` needs no position)."""

    def __init__(self, fs: RafsFS, ino: int, path: bytes) -> None:
        super().__init__()
        assert fs.pipeline is not None
        self._fs = fs
        self._pipeline = fs.pipeline
        self.ino = ino
        self.name = os.fsdecode(path)
        self.size = fs.pipeline.file(ino).size
        self._pos = 0
        self._lock = threading.Lock()

    @property
    def mode(self) -> str:
        """Always ``"rb"``."""
        return "rb"

    def readable(self) -> bool:
        """Return True."""
        return True

    def seekable(self) -> bool:
        """Return True."""
        return True

    def pread(self, size: int, offset: int) -> bytes:
        """Return up to ``size`` bytes at ``offset`` without moving the position."""
        self._check()
        return self._pipeline.read(self.ino, offset, size)

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when negative or None)."""
        self._check()
        with self._lock:
            left = self.size - self._pos
            n = left if size is None or size < 0 else min(size, left)
            data = self._pipeline.read(self.ino, self._pos, n) if n > 0 else b""
            self._pos += len(data)
            return data

    def readall(self) -> bytes:
        """Read everything from the position to the end."""
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        """Read into a writable buffer; return the number of bytes read."""
        with memoryview(buffer) as mv:
            data = self.read(mv.nbytes)
            mv[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position as ``os.lseek`` does."""
        self._check()
        with self._lock:
            base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}.get(whence)
            if base is None:
                raise ValueError(f"invalid whence {whence}")
            if base + offset < 0:
                raise OSError(errno.EINVAL, "negative seek position", self.name)
            self._pos = base + offset
            return self._pos

    def tell(self) -> int:
        """Return the position."""
        return self._pos

    def fileno(self) -> int:
        """There is no descriptor behind a RafsFile."""
        raise io.UnsupportedOperation("RafsFile has no file descriptor")

    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")


class RafsFS:
    """A RAFS image opened for reading with a backend, an optional cache and optional prefetch.

    Paths are absolute in the image (a relative path is taken from ``/``); symlinks are followed
    inside the image (an absolute target starts at the image's root). :meth:`lstat` and
    :meth:`readlink` do not follow the last component. Without a pipeline (:func:`open_metadata`)
    only metadata can be read.

    Public attributes (read-only): ``image`` (the :class:`~nydus_core.rafs.image.RafsImage`),
    ``pipeline`` (the :class:`~nydus_core.storage.ReadPipeline`, or None), ``config``, ``backend``,
    ``cache`` and ``prefetcher`` (the plugins it opened, or None).
    """

    def __init__(self, image: RafsImage, pipeline: ReadPipeline | None, *, config: NydusConfig | None = None,
                 backend: Backend | None = None, cache: CachePolicy | None = None,
                 prefetcher: Prefetcher | None = None, owns: bool = True) -> None:
        self.image = image
        self.pipeline = pipeline
        self.config = config
        self.backend = backend
        self.cache = cache
        self.prefetcher = prefetcher
        self._owns = owns
        self._closed = False
        # Lookup caches (the image is immutable, so entries never go stale): inode modes, and
        # directory entries, filled a whole small directory at a time. Plain dict operations are
        # atomic, so threads share them without a lock.
        self._modes: dict[int, int] = {}
        self._dentries: dict[tuple[int, bytes], int] = {}
        self._listed: set[int] = set()
        self._paths: dict[tuple[Any, bool], tuple[int, bytes]] = {}

    # -- paths ------------------------------------------------------------------------------------

    def _mode(self, ino: int) -> int:
        mode = self._modes.get(ino)
        if mode is None:
            mode = self.image.getattr(ino).mode
            if len(self._modes) >= _DCACHE_MAX:
                self._modes.clear()
            self._modes[ino] = mode
        return mode

    def _child(self, parent: int, name: bytes) -> int | None:
        """Return the inode of ``name`` in directory ``parent`` (cached), or None."""
        key = (parent, name)
        ino = self._dentries.get(key)
        if ino is not None:
            return ino
        if parent not in self._listed:
            if len(self._dentries) >= _DCACHE_MAX:
                self._dentries.clear()
                self._listed.clear()
            for count, (entry, child) in enumerate(self.image.readdir(parent), 1):
                self._dentries[(parent, entry)] = child
                if count >= _BULK_DIR_MAX:
                    break
            else:
                self._listed.add(parent)
            ino = self._dentries.get(key)
            if ino is not None:
                return ino
        if parent in self._listed:
            return None
        ino = self.image.lookup(parent, name)
        if ino is not None:
            self._dentries[key] = ino
        return ino

    def _lookup(self, path: PathLike, *, follow: bool) -> tuple[int, bytes]:
        """Return (ino, normalised path) of ``path``, following symlinks (the last one if ``follow``)."""
        key: tuple[Any, bool] | None = (path, follow)
        try:
            hit = self._paths.get((path, follow))
        except TypeError:  # an unhashable path-like
            hit = key = None
        if hit is not None:
            return hit
        found = self._walk_path(path, follow=follow)
        if key is not None:
            if len(self._paths) >= _DCACHE_MAX:
                self._paths.clear()
            self._paths[key] = found
        return found

    def _walk_path(self, path: PathLike, *, follow: bool) -> tuple[int, bytes]:
        image = self.image
        full = _fspath(path)
        todo = [p for p in full.split(b"/") if p not in (b"", b".")]
        todo.reverse()
        stack: list[int] = [image.root_ino]
        names: list[bytes] = []
        hops = 0
        while todo:
            part = todo.pop()
            if part == b"..":
                if len(stack) > 1:
                    stack.pop()
                    names.pop()
                continue
            cur = stack[-1]
            if not statmod.S_ISDIR(self._mode(cur)):
                raise _err(errno.ENOTDIR, full)
            child = self._child(cur, part)
            if child is None:
                raise _err(errno.ENOENT, full)
            if statmod.S_ISLNK(self._mode(child)) and (todo or follow):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise _err(errno.ELOOP, full)
                target = image.readlink(child)
                if target.startswith(b"/"):
                    del stack[1:]
                    del names[:]
                more = [p for p in target.split(b"/") if p not in (b"", b".")]
                todo.extend(reversed(more))
                continue
            stack.append(child)
            names.append(part)
        return stack[-1], b"/" + b"/".join(names)

    def resolve(self, path: PathLike, *, follow_symlinks: bool = True) -> int:
        """Return the inode number at ``path``."""
        return self._lookup(path, follow=follow_symlinks)[0]

    def exists(self, path: PathLike) -> bool:
        """Return whether ``path`` exists (following symlinks, as ``os.path.exists``)."""
        try:
            self._lookup(path, follow=True)
        except OSError:
            return False
        return True

    def stat(self, path: PathLike, *, follow_symlinks: bool = True) -> os.stat_result:
        """Return an ``os.stat_result`` for ``path``; ``st_ino`` is the image's inode number."""
        ino, _ = self._lookup(path, follow=follow_symlinks)
        return _stat_result(self.image.getattr(ino))

    def lstat(self, path: PathLike) -> os.stat_result:
        """Like :meth:`stat` without following a final symlink."""
        return self.stat(path, follow_symlinks=False)

    def isdir(self, path: PathLike) -> bool:
        """Return whether ``path`` is a directory (following symlinks)."""
        try:
            return statmod.S_ISDIR(self.stat(path).st_mode)
        except OSError:
            return False

    def isfile(self, path: PathLike) -> bool:
        """Return whether ``path`` is a regular file (following symlinks)."""
        try:
            return statmod.S_ISREG(self.stat(path).st_mode)
        except OSError:
            return False

    def islink(self, path: PathLike) -> bool:
        """Return whether ``path`` is a symlink."""
        try:
            return statmod.S_ISLNK(self.lstat(path).st_mode)
        except OSError:
            return False

    def readlink(self, path: PathLike) -> str:
        """Return the target of symlink ``path``."""
        ino, norm = self._lookup(path, follow=False)
        if not self.image.getattr(ino).is_symlink:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), os.fsdecode(norm))
        return os.fsdecode(self.image.readlink(ino))

    def listdir(self, path: PathLike = "/") -> list[str]:
        """Return the names in directory ``path``, sorted as the image stores them."""
        ino, norm = self._lookup(path, follow=True)
        if not self.image.getattr(ino).is_dir:
            raise _err(errno.ENOTDIR, norm)
        return [os.fsdecode(name) for name, _ in self.image.readdir(ino)]

    def scandir(self, path: PathLike = "/") -> Iterator[tuple[str, os.stat_result]]:
        """Yield ``(name, lstat)`` of each entry of directory ``path`` (one pass, no lookups)."""
        ino, norm = self._lookup(path, follow=True)
        if not self.image.getattr(ino).is_dir:
            raise _err(errno.ENOTDIR, norm)
        for name, child in self.image.readdir(ino):
            yield os.fsdecode(name), _stat_result(self.image.getattr(child))

    def walk(self, top: PathLike = "/") -> Iterator[tuple[str, list[str], list[str]]]:
        """Like ``os.walk`` (top-down, symlinks to directories are not followed)."""
        ino, norm = self._lookup(top, follow=True)
        if not self.image.getattr(ino).is_dir:
            return
        stack = [(os.fsdecode(norm), ino)]
        while stack:
            dirpath, dino = stack.pop()
            dirs: list[tuple[str, int]] = []
            files: list[str] = []
            for name, child in self.image.readdir(dino):
                n = os.fsdecode(name)
                if self.image.getattr(child).is_dir:
                    dirs.append((n, child))
                else:
                    files.append(n)
            dirnames = [d for d, _ in dirs]
            yield dirpath, dirnames, files
            keep = set(dirnames)  # callers may prune dirnames, as with os.walk
            base = dirpath.rstrip("/")
            for dname, child in reversed(dirs):
                if dname in keep:
                    stack.append((f"{base}/{dname}", child))

    def getxattr(self, path: PathLike, name: str | bytes, *, follow_symlinks: bool = True) -> bytes:
        """Return the value of extended attribute ``name`` (``ENODATA`` when absent)."""
        ino, norm = self._lookup(path, follow=follow_symlinks)
        key = os.fsencode(name)
        xattrs = self.image.xattrs(ino) if self.image.getattr(ino).has_xattr else {}
        if key not in xattrs:
            raise OSError(errno.ENODATA, os.strerror(errno.ENODATA), os.fsdecode(norm))
        return xattrs[key]

    def listxattr(self, path: PathLike, *, follow_symlinks: bool = True) -> list[str]:
        """Return the names of the extended attributes of ``path``."""
        ino, _ = self._lookup(path, follow=follow_symlinks)
        if not self.image.getattr(ino).has_xattr:
            return []
        return [os.fsdecode(k) for k in self.image.xattrs(ino)]

    # -- data -------------------------------------------------------------------------------------

    def open(self, path: PathLike, mode: str = "rb", buffering: int = -1,
             encoding: str | None = None, errors: str | None = None) -> Any:
        """Open a regular file for reading: ``"rb"`` (buffered unless ``buffering=0``) or ``"r"``."""
        if mode not in ("r", "rb", "rt"):
            raise ValueError(f"{os.fsdecode(_fspath(path))}: the image is read-only (mode {mode!r})")
        ino, norm = self._lookup(path, follow=True)
        kind = self._mode(ino)
        if statmod.S_ISDIR(kind):
            raise _err(errno.EISDIR, norm)
        if self.pipeline is None:
            raise UsageError(f"{self.image.path}: opened for metadata only; file data needs a backend")
        if not statmod.S_ISREG(kind):
            raise OSError(errno.EINVAL, "not a regular file", os.fsdecode(norm))
        ap = self.pipeline.access_pattern
        if ap is not None:
            ap.note_path(ino, norm)
        raw = RafsFile(self, ino, norm)
        if mode == "rb" and buffering == 0:
            return raw
        if buffering == 0:
            raise ValueError("text mode needs buffering")
        buffered = io.BufferedReader(raw, buffer_size=buffering if buffering > 1 else 128 << 10)
        if mode == "rb":
            return buffered
        return io.TextIOWrapper(buffered, encoding=encoding or "utf-8", errors=errors)

    def read_bytes(self, path: PathLike) -> bytes:
        """Return the whole content of file ``path``."""
        with self.open(path, buffering=0) as f:
            data: bytes = f.read()
            return data

    def read_text(self, path: PathLike, encoding: str = "utf-8", errors: str = "strict") -> str:
        """Return the content of file ``path`` decoded."""
        return self.read_bytes(path).decode(encoding, errors)

    # -- observability ----------------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """Return the pipeline's counters (backend, blobcache, reads)."""
        return self.pipeline.metrics() if self.pipeline is not None else {}

    def access_pattern(self) -> list[str]:
        """Return the files read so far in first-access order (needs ``access_pattern`` on)."""
        ap = self.pipeline.access_pattern if self.pipeline is not None else None
        if ap is None:
            raise ConfigError("access_pattern is off in this config", key="access_pattern")
        return ap.paths(self.image)

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop prefetching and release the pipeline, cache, backend and image."""
        if self._closed:
            return
        self._closed = True
        if self.prefetcher is not None:
            self.prefetcher.stop()
        if self.pipeline is not None:
            self.pipeline.close()
        if self._owns:
            if self.cache is not None:
                self.cache.close()
            if self.backend is not None:
                self.backend.close()
            self.image.close()

    def __enter__(self) -> RafsFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_metadata(bootstrap: PathLike) -> RafsFS:
    """Open ``bootstrap`` for metadata only (listing, stat, links, xattrs): no backend, no blobs."""
    return RafsFS(open_image(os.fsdecode(bootstrap)), None)


def _load(config: NydusConfig | Mapping[str, Any] | PathLike | None, blob_dir: PathLike | None,
          cache_dir: PathLike | None) -> NydusConfig:
    if isinstance(config, NydusConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(config, source="<config>")
    if config is not None:
        return load_config(os.fsdecode(config))
    if blob_dir is None:
        raise ConfigError("give a nydusd config or a blob directory", key="config")
    return NydusConfig.from_localfs_dir(os.fsdecode(blob_dir),
                                        cache_dir=os.fsdecode(cache_dir) if cache_dir else None)


def open_fs(
    bootstrap: PathLike | RafsImage,
    config: NydusConfig | Mapping[str, Any] | PathLike | None = None,
    *,
    blob_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    blob_id: str | None = None,
    prefetch_files: Iterable[str] | None = None,
    prefetcher: str | None = None,
    workers: int | None = None,
) -> RafsFS:
    """Open ``bootstrap`` with ``config`` (a nydusd config: path, parsed :class:`NydusConfig`, or a
    dict) and return a :class:`RafsFS`.

    Without a config, ``blob_dir`` gives the ``localfs`` backend (nydusd ``-D``), with an optional
    blob cache in ``cache_dir``. ``blob_id`` names the data blob of an image built with
    ``--blob-inline-meta`` when the bootstrap's file name does not. ``prefetch_files`` (nydusd
    ``--prefetch-files``) or ``fs_prefetch.enable`` start prefetching; ``prefetcher`` forces a
    prefetcher by name (``table``, ``files``, ``all``).
    """
    cfg = _load(config, blob_dir, cache_dir)
    image = bootstrap if isinstance(bootstrap, RafsImage) else open_image(os.fsdecode(bootstrap))
    backend = cache = None
    pipeline: ReadPipeline | None = None
    try:
        blob_ids = resolve_blob_ids(image.blobs, bootstrap_path=getattr(image, "path", None),
                                    inline_blob_id=blob_id)
        hints = list(prefetch_files or [])
        settings = prefetch_settings(cfg.fs_prefetch)
        request = PrefetchRequest(enable=bool(settings["enable"]), hints=tuple(hints),
                                  prefetch_all=bool(settings["prefetch_all"]))
        pf_cls = choose_prefetcher(request, prefetcher)
        backend = cfg.require_backend().create()
        cache = cfg.cache.create() if cfg.cache is not None else None
        n = workers or max(8, min(64, settings["threads_count"] + 1 if pf_cls else 8))
        pipeline = ReadPipeline(
            image, backend, cache, digest_validate=cfg.digest_validate, amplify_io=cfg.amplify_io,
            workers=n, blob_ids=blob_ids, access_pattern=AccessPattern() if cfg.access_pattern else False,
            id=cfg.id,
        )
        pf = None
        if pf_cls is not None:
            pf = pf_cls(settings)
            pf.start(image, pipeline, hints)
        return RafsFS(image, pipeline, config=cfg, backend=backend, cache=cache, prefetcher=pf)
    except BaseException:
        if pipeline is not None:
            pipeline.close()
        if cache is not None:
            cache.close()
        if backend is not None:
            backend.close()
        if not isinstance(bootstrap, RafsImage):
            image.close()
        raise
