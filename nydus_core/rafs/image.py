"""The lazy, read-only view of a RAFS bootstrap that every consumer uses.

``open_image(path)`` detects v5 or v6 and returns a :class:`RafsImage`. The bootstrap is ``mmap``ed
and decoded on demand: opening a 100k-file image builds no per-inode Python objects. Every offset and
count read from disk is bounds-checked; violations raise :class:`~nydus_core.errors.FormatError`.
"""

from __future__ import annotations

import abc
import os
import stat
from collections.abc import Iterator, Sequence

from ..errors import FormatError
from .model import BlobInfo, ChunkInfo, InodeAttrs, TreeInode

__all__ = ["RafsImage", "open_image"]


class RafsImage(abc.ABC):
    """A RAFS bootstrap opened for reading (v5 or v6).

    Inode numbers (``ino``) are the reader's: v5 ``i_ino``, v6 nid. Hard links share one ``ino``.
    Names are raw bytes. Paths given to :meth:`resolve` are absolute, ``/``-separated.
    """

    path: str
    version: int  # 5 or 6
    flags: int  # RafsSuperFlags
    chunk_size: int
    compressor: int  # algorithm id of chunk data (§2.1)
    digester: int  # algorithm id of chunk digests
    explicit_uid_gid: bool
    blobs: list[BlobInfo]
    root_ino: int

    @abc.abstractmethod
    def inode_count(self) -> int:
        """Return the number of inodes recorded in the superblock."""

    @abc.abstractmethod
    def getattr(self, ino: int) -> InodeAttrs:
        """Return the attributes of ``ino``."""

    @abc.abstractmethod
    def lookup(self, parent: int, name: bytes) -> int | None:
        """Return the ino of entry ``name`` in directory ``parent``, or None."""

    @abc.abstractmethod
    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        """Yield ``(name, ino)`` of the directory's entries (no ``.``/``..``) in name order,
        starting at entry index ``offset``."""

    @abc.abstractmethod
    def readlink(self, ino: int) -> bytes:
        """Return the target of symlink ``ino``."""

    @abc.abstractmethod
    def xattrs(self, ino: int) -> dict[bytes, bytes]:
        """Return the extended attributes of ``ino`` (full names, e.g. ``b"user.x"``)."""

    @abc.abstractmethod
    def chunks(self, ino: int) -> Sequence[ChunkInfo]:
        """Return the chunk records of regular file ``ino`` in file order, ``file_offset`` set."""

    @abc.abstractmethod
    def prefetch_inodes(self) -> list[int]:
        """Return the inos listed in the bootstrap's prefetch table."""

    def chunks_for_range(self, ino: int, offset: int, size: int) -> Sequence[ChunkInfo]:
        """Return the chunk records of ``ino`` that overlap ``[offset, offset + size)``.

        Readers override this to decode only the records a read needs."""
        end = offset + size
        return [c for c in self.chunks(ino)
                if c.file_offset < end and c.file_offset + c.uncompressed_size > offset]

    def chunk_bytes(self, ino: int) -> int:
        """Return the bytes the chunk records of regular file ``ino`` cover (checked as
        :meth:`chunks` checks them; readers may avoid decoding the records)."""
        return sum(c.uncompressed_size for c in self.chunks(ino))

    def parent(self, ino: int) -> int | None:
        """Return the parent directory's ino when the format records it (else None)."""
        return None

    def prepare_chunk_checks(self) -> None:  # noqa: B027 - optional hook
        """Build now whatever :meth:`chunk_bytes` builds on first use (e.g. before a fork, so that
        both processes share it instead of each building its own)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the mapping."""

    def __enter__(self) -> RafsImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- conveniences built on the primitives ---------------------------------------------------

    def resolve(self, path: str | bytes) -> int:
        """Return the ino at absolute ``path``; FileNotFoundError if missing."""
        p = os.fsencode(path)
        ino = self.root_ino
        for part in p.split(b"/"):
            if part in (b"", b"."):
                continue
            if not self.getattr(ino).is_dir:
                raise NotADirectoryError(os.fsdecode(p))
            found = self.lookup(ino, part)
            if found is None:
                raise FileNotFoundError(os.fsdecode(p))
            ino = found
        return ino

    def walk(self, top: int | None = None, prefix: bytes = b"") -> Iterator[tuple[bytes, int]]:
        """Yield ``(path, ino)`` for every entry below ``top`` (root first, path ``b"/"``),
        depth-first in name order. Guards against directory cycles in hostile images."""
        for path, ino, _attrs in self.walk_attrs(top, prefix):
            yield path, ino

    def walk_attrs(
        self, top: int | None = None, prefix: bytes = b""
    ) -> Iterator[tuple[bytes, int, InodeAttrs]]:
        """:meth:`walk` yielding each entry's attributes too: ``(path, ino, attrs)``."""
        start = self.root_ino if top is None else top
        attrs = self.getattr(start)
        yield (prefix or b"/"), start, attrs
        seen_dirs = {start}
        stack: list[tuple[bytes, Iterator[tuple[bytes, int]]]] = [(prefix, self.readdir(start))]
        while stack:
            base, it = stack[-1]
            entry = next(it, None)
            if entry is None:
                stack.pop()
                continue
            name, ino = entry
            path = base + b"/" + name
            attrs = self.getattr(ino)
            yield path, ino, attrs
            if attrs.mode & 0o170000 == 0o040000:
                if ino in seen_dirs:
                    raise FormatError(f"{self.path}: directory cycle at {os.fsdecode(path)}")
                seen_dirs.add(ino)
                stack.append((path, self.readdir(ino)))

    def to_tree(self) -> TreeInode:
        """Decode the whole image into a :class:`TreeInode` tree (for merge, unpack, rebuild).

        Hard links become one shared ``TreeInode``; chunk records are copied as they are."""
        made: dict[int, TreeInode] = {}

        def node(ino: int) -> TreeInode:
            if ino in made:
                return made[ino]
            a = self.getattr(ino)
            t = TreeInode(
                mode=a.mode, uid=a.uid, gid=a.gid, mtime=a.mtime, mtime_nsec=a.mtime_nsec,
                size=a.size, rdev=a.rdev, xattrs=self.xattrs(ino) if a.has_xattr else {},
            )
            if stat.S_ISLNK(a.mode):
                t.symlink = self.readlink(ino)
            elif stat.S_ISREG(a.mode):
                t.chunks = list(self.chunks(ino))
            made[ino] = t
            return t

        root = node(self.root_ino)
        for path, ino in self.walk():
            if ino == self.root_ino and path == b"/":
                continue
            parent_path, _, name = path.rpartition(b"/")
            parent = root
            for part in parent_path.split(b"/"):
                if part:
                    parent = parent.children[part]
            parent.children[name] = node(ino)
        return root


def open_image(path: str | os.PathLike[str]) -> RafsImage:
    """Open a RAFS v5 or v6 bootstrap, detecting the version (rafs-format.md §1)."""
    from .reader import open_bootstrap

    return open_bootstrap(os.fspath(path))
