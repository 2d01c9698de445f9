"""Turn a local directory into a tree (``dir-rafs`` / ``directory``).

Two passes: a metadata walk (lstat, xattrs, symlink targets, hard links by ``(st_dev, st_ino)``)
in name order, then file data read in tree order in chunk-size pieces (so the total is known for
progress and the blob's chunk order is the tree order). Nothing is followed: symlinks are recorded
as symlinks, the walk never leaves the source directory.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections import deque
from pathlib import Path
from typing import cast

from ..errors import BuildError
from ..interfaces import Compressor, Digester
from ..rafs.blob_writer import BlobWriter
from ..rafs.model import TreeInode
from . import small_files
from .chunker import ChunkPipeline, Readable
from .limits import MAX_ID, MAX_NAME, check_entry, inode_problem
from .options import BuildStats
from .small_files import (
    BATCH_BYTES,
    BATCH_FILES,
    FileResult,
    Pending,
    SmallFileReader,
    open_source_file,
    read_small_file,
)

log = logging.getLogger("nydus.builder")

#: xattr name prefixes RAFS can store (rafs-format.md §4.7, §5.9).
XATTR_PREFIXES = (b"user.", b"security.", b"trusted.", b"system.posix_acl_access",
                  b"system.posix_acl_default")
_NO_XATTR_ERRNOS = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.EPERM, errno.EACCES}
#: files up to this size (and one chunk) are read by worker processes when the build has workers
SMALL_FILE = 1 << 20
#: below this many small files a build reads them itself (starting workers costs more)
PARALLEL_MIN_FILES = 2048


def allowed_xattr(name: bytes) -> bool:
    """Return whether an xattr name has a prefix RAFS can store."""
    return name.startswith(XATTR_PREFIXES)


def read_xattrs(path: bytes) -> dict[bytes, bytes]:
    """Return the storable xattrs of ``path`` (not following symlinks); {} where unsupported."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_XATTR_ERRNOS:
            return {}
        raise
    out: dict[bytes, bytes] = {}
    for name in names:
        raw = os.fsencode(name)
        if not allowed_xattr(raw):
            continue
        try:
            out[raw] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _NO_XATTR_ERRNOS:
                raise
    return out


def _error(path: bytes, action: str, exc: OSError) -> BuildError:
    return BuildError(f"{os.fsdecode(path)}: {action}: {exc.strerror or exc}")


def _inode_from_stat(st: os.stat_result, *, repeatable: bool) -> TreeInode:
    return TreeInode(
        mode=st.st_mode,
        uid=0 if repeatable else st.st_uid,
        gid=0 if repeatable else st.st_gid,
        mtime=st.st_mtime_ns // 1_000_000_000,
        mtime_nsec=st.st_mtime_ns % 1_000_000_000,
        rdev=st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0,
    )


class DirectorySource:
    """A directory walked into a tree; :meth:`load` reads file data through a :class:`ChunkPipeline`."""

    def __init__(
        self, path: str | os.PathLike[str], *, repeatable: bool = False,
        exclude: set[tuple[int, int]] | None = None,
    ) -> None:
        self.path = Path(path)
        #: the source as named in errors (``LAYER: entry /PATH: ...``)
        self.layer = os.fspath(path)
        self.repeatable = repeatable
        #: ``(st_dev, st_ino)`` of files never to include (the build's own output being written)
        self.exclude = exclude or set()
        self._files: list[tuple[TreeInode, bytes]] = []
        self.total_bytes = 0

    def scan(
        self, stats: BuildStats, *, pipeline: ChunkPipeline | None = None, workers: int = 1
    ) -> TreeInode:
        """Walk the metadata; return the tree (regular files still without chunks).

        With ``pipeline``, file data is read into it during the walk too, as :meth:`load` reads it
        (worker processes start as soon as enough small files are found); the pipeline's total is
        set once the walk knows it."""
        if pipeline is None:
            return self._scan(stats, None)
        loader = FileLoader(pipeline, workers)
        try:
            root = self._scan(stats, loader)
            pipeline.total = self.total_bytes
            loader.finish()
        finally:
            loader.close()
        return root

    def _scan(self, stats: BuildStats, loader: FileLoader | None) -> TreeInode:
        """The walk; each entry the format might not hold (see :mod:`.limits`) is checked as it is
        found, the rest (regular files and directories with in-range attributes and no xattrs)
        cannot be out of range, so no second pass over the tree is needed."""
        top = os.fsencode(self.path)
        layer = self.layer
        try:
            st = os.lstat(top)
        except OSError as exc:
            raise BuildError(f"{self.path}: cannot read source directory: {exc.strerror or exc}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise BuildError(f"{self.path}: source is not a directory")
        root = _inode_from_stat(st, repeatable=self.repeatable)
        root.xattrs = self._xattrs(top)
        problem = inode_problem(root)
        if problem is not None:
            raise BuildError(f"{layer}: entry /: {problem}")
        stats.dirs += 1
        links: dict[tuple[int, int], TreeInode] = {}
        exclude = self.exclude
        repeatable = self.repeatable
        lstat, ifmt = os.lstat, stat.S_IFMT
        s_isdir, s_isreg, s_islnk = stat.S_ISDIR, stat.S_ISREG, stat.S_ISLNK
        plain = (stat.S_IFREG, stat.S_IFDIR)
        xattrs_of = self._xattrs
        add = loader.add if loader is not None else None
        files = self._files
        stack: list[tuple[bytes, bytes, TreeInode]] = [(top, b"/", root)]
        while stack:
            dpath, dimage, dnode = stack.pop()
            try:
                with os.scandir(dpath) as it:
                    entries = sorted((e.name, e.path) for e in it)
            except OSError as exc:
                raise _error(dpath, "cannot list directory", exc) from None
            subdirs: list[tuple[bytes, bytes, TreeInode]] = []
            children = dnode.children
            for name, path in entries:
                try:
                    st = lstat(path)
                except FileNotFoundError:
                    log.warning("%s vanished during the build; skipped", os.fsdecode(path))
                    continue
                except OSError as exc:
                    raise _error(path, "cannot stat", exc) from None
                mode = st.st_mode
                linked = st.st_nlink > 1 and not s_isdir(mode)
                if linked or exclude:
                    key = (st.st_dev, st.st_ino)
                    if key in exclude:
                        continue
                    existing = links.get(key) if linked else None
                    if existing is not None:
                        children[name] = existing
                        stats.hardlinks += 1
                        continue
                mtime_ns = st.st_mtime_ns
                xattrs = xattrs_of(path)
                if repeatable:
                    node = TreeInode(mode, 0, 0, mtime_ns // 1_000_000_000, mtime_ns % 1_000_000_000)
                else:
                    node = TreeInode(mode, st.st_uid, st.st_gid, mtime_ns // 1_000_000_000,
                                     mtime_ns % 1_000_000_000)
                if xattrs:
                    node.xattrs = xattrs
                if s_isreg(mode):
                    stats.files += 1
                    size = node.size = st.st_size
                    self.total_bytes += size
                    if add is None:
                        files.append((node, path))
                    else:
                        add(node, path)
                elif s_isdir(mode):
                    stats.dirs += 1
                    subdirs.append((path, (dimage if dimage == b"/" else dimage + b"/") + name, node))
                elif s_islnk(mode):
                    stats.symlinks += 1
                    try:
                        node.symlink = os.readlink(path)
                    except OSError as exc:
                        raise _error(path, "cannot read link", exc) from None
                    node.size = len(node.symlink)
                else:
                    stats.others += 1
                    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                        node.rdev = st.st_rdev
                # only these can be out of the format's range (size, nsec, ...: not from lstat)
                if (mtime_ns < 0 or xattrs or ifmt(mode) not in plain or len(name) > MAX_NAME
                        or node.uid > MAX_ID or node.gid > MAX_ID):
                    check_entry(layer, dimage, name, node)
                if linked:
                    links[(st.st_dev, st.st_ino)] = node
                children[name] = node
            stack.extend(reversed(subdirs))
            if loader is not None:
                loader.poll()
        return root

    def _xattrs(self, path: bytes) -> dict[bytes, bytes]:
        try:
            return read_xattrs(path)
        except OSError as exc:
            raise _error(path, "cannot read xattrs", exc) from None

    def load(self, pipeline: ChunkPipeline, *, workers: int = 1) -> None:
        """Read every regular file's data (in tree order) into chunks, after :meth:`scan`.

        With ``workers > 1`` and enough small files (at most one chunk and ``SMALL_FILE`` bytes),
        those are read, digested and compressed by that many worker processes in batches, the rest
        here; the output is byte-identical to ``workers=1``. Errors reading a source file name that
        file; errors writing the blob propagate as they are (the build names its output)."""
        loader = FileLoader(pipeline, workers)
        try:
            for node, path in self._files:
                loader.add(node, path)
            loader.finish()
        finally:
            loader.close()


class FileLoader:
    """Reads regular files into a :class:`ChunkPipeline` in the order they are added (tree
    order), so that the blob is the same whoever reads them.

    Files are held back until enough small ones are known to be worth worker processes (or until
    :meth:`finish`, which reads them here); from then on small files go to the workers in batches
    as they are added, larger ones are read here in their turn, and finished batches are taken in
    (deduplicated and written) whenever :meth:`poll` finds them done -- so a directory walk can
    add files while earlier ones are being read. :meth:`close` stops the workers."""

    def __init__(self, pipeline: ChunkPipeline, workers: int) -> None:
        self.pipeline = pipeline
        self.limit = min(pipeline.chunk_size, SMALL_FILE)
        writer = pipeline.writer
        self._workers = workers if isinstance(writer, BlobWriter) else 1
        self._held: list[tuple[TreeInode, bytes]] = []
        self._small = 0
        self._reader: SmallFileReader | None = None
        #: in tree order: a file read here, a batch given to the workers with its pending result, or a
        #: batch this process read while the workers were behind, with its results
        self._queue: deque[tuple[TreeInode, bytes] | tuple[list[tuple[TreeInode, bytes]], Pending]
                           | tuple[list[tuple[TreeInode, bytes]], list[FileResult]]] = deque()
        self._in_flight = 0
        self._here = 0  # batches read here, waiting in the queue
        self._algorithms: tuple[Digester, Compressor | None] | None = None
        self._batch: list[tuple[TreeInode, bytes]] = []
        self._batch_bytes = 0
        self._batch_task = 0
        self._max_task = 1 << 62  # set by the reader once workers start
        self._finished = False

    def add(self, node: TreeInode, path: bytes) -> None:
        """Queue a regular file (``node.size`` from the scan) for reading."""
        if self._reader is not None:
            self._route(node, path)
            return
        self._held.append((node, path))
        if node.size <= self.limit:
            self._small += 1
            if self._workers > 1 and self._small >= PARALLEL_MIN_FILES:
                if small_files.may_fork():
                    self._start()
                else:  # a library caller with threads: everything is read here
                    self._workers = 1

    def _start(self) -> None:
        writer = self.pipeline.writer
        assert isinstance(writer, BlobWriter)
        compressor = writer.compressor if writer.compresses_chunks else None
        self._reader = SmallFileReader(self._workers, self.pipeline.digester, compressor)
        self._algorithms = (self.pipeline.digester, compressor)
        self._max_task = self._reader.max_task_bytes
        held, self._held = self._held, []
        for node, path in held:
            self._route(node, path)

    def _route(self, node: TreeInode, path: bytes) -> None:
        if node.size > self.limit:
            self._submit()
            self._queue.append((node, path))
            return
        self._batch.append((node, path))
        self._batch_bytes += node.size
        self._batch_task += len(path) + 32  # what the batch's (path, size) take in the worker's pipe
        if (len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES
                or self._batch_task >= self._max_task):
            self._submit()

    def _submit(self) -> None:
        if not self._batch:
            return
        reader = self._reader
        assert reader is not None
        batch = self._batch
        self._batch, self._batch_bytes, self._batch_task = [], 0, 0
        if self._in_flight >= reader.window:
            self._drain(block=False)
        if self._in_flight >= reader.window and self._here < reader.window and self._algorithms:
            # the workers are behind: rather than wait for them, this process reads this batch
            # itself (taken in, in its turn, like the workers' batches: the output is the same)
            digester, compressor = self._algorithms
            done = [read_small_file(path, node.size, digester, compressor) for node, path in batch]
            self._queue.append((batch, done))
            self._here += 1
            return
        self._queue.append((batch, reader.submit([(path, node.size) for node, path in batch])))
        self._in_flight += 1
        if self._in_flight > reader.window:
            self._drain(block=True, keep=reader.window // 2)

    def poll(self) -> None:
        """Take in, in order, what is done at the head of the queue (without waiting)."""
        self._drain(block=False)

    def _drain(self, *, block: bool, keep: int = 0) -> None:
        """Take in the head of the queue in order; with ``block``, wait for batches until at most
        ``keep`` are in flight, else stop at the first one not done."""
        queue = self._queue
        while queue:
            head = queue[0]
            if isinstance(head[0], TreeInode):
                node, path = head
                queue.popleft()
                self._read_here(node, path)
                continue
            batch, pending = head
            if isinstance(pending, list):  # read by this process
                queue.popleft()
                self._here -= 1
                self._take(batch, pending)
                continue
            if not (pending.ready() or (block and self._in_flight > keep)):
                return
            queue.popleft()
            self._in_flight -= 1
            assert self._reader is not None
            self._take(batch, self._reader.result(pending))

    def finish(self) -> None:
        """Read everything added and not read yet."""
        if self._reader is None:
            held, self._held = self._held, []
            for node, path in held:
                self._read_here(node, path)
            return
        self._submit()
        self._drain(block=True)
        self._finished = True

    def close(self) -> None:
        """Stop the workers (terminated when the build did not finish)."""
        if self._reader is not None:
            self._reader.close(terminate=not self._finished)
            self._reader = None

    def _take(self, batch: list[tuple[TreeInode, bytes]], results: list[FileResult]) -> None:
        failed = next((res for res in results if isinstance(res, str)), None)
        if failed is not None:
            raise BuildError(failed)
        read = cast("list[tuple[int, bytes, bytes, bool]]", results)
        for (node, path), chunk, res in zip(batch, self.pipeline.add_stored(read), read, strict=True):
            if chunk is not None:
                node.chunks = [chunk]
            size = res[0]
            if size != node.size:
                log.warning("%s shrank during the build (%d -> %d bytes)", os.fsdecode(path), node.size, size)
                node.size = size

    def _read_here(self, node: TreeInode, path: bytes) -> None:
        pipeline = self.pipeline
        try:
            fd = open_source_file(path)
        except OSError as exc:
            raise _error(path, "cannot read", exc) from None
        with os.fdopen(fd, "rb", buffering=0) as raw:
            if node.size <= pipeline.chunk_size:  # one read, no wrapper: most files of an image
                chunks, size = pipeline.add_file(_OneRead(fd, path, node.size), node.size)
            else:
                chunks, size = pipeline.add_file(_SourceReader(raw, path), node.size)
        if size != node.size:
            log.warning("%s shrank during the build (%d -> %d bytes)", os.fsdecode(path), node.size, size)
            node.size = size
        node.chunks = chunks


class _OneRead:
    """A small source file read with one ``os.read`` (reads errors become BuildErrors naming it)."""

    __slots__ = ("_fd", "_left", "_path")

    def __init__(self, fd: int, path: bytes, size: int) -> None:
        self._fd, self._path, self._left = fd, path, size

    def read(self, n: int = -1) -> bytes:
        try:
            data = os.read(self._fd, n if n >= 0 else max(self._left, 1 << 16))
        except OSError as exc:
            raise _error(self._path, "cannot read", exc) from None
        self._left -= len(data)
        return data


class _SourceReader:
    """A source file whose read errors become BuildErrors naming it (write errors stay OSErrors)."""

    def __init__(self, f: Readable, path: bytes) -> None:
        self._f, self._path = f, path

    def read(self, n: int = -1) -> bytes:
        try:
            return self._f.read(n)
        except OSError as exc:
            raise _error(self._path, "cannot read", exc) from None
