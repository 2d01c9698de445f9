"""Turn a tar stream into a tree (``tar-rafs`` / ``targz-rafs``), reading it once, front to back.

The tar is read in streaming mode (``r|``), so a pipe, a fifo or stdin works; a gzip-compressed tar is
inflated by :class:`~nydus_core.gzipstream.GzipReader` (any number of members, every member's CRC32 and
ISIZE checked, read to its end even after the tar's end-of-archive blocks). Rules:

* member paths with ``..`` or a leading ``/`` are normalized into the image root, with a warning
  naming the member; nothing can land outside the root;
* a later member with the same path replaces the earlier one (as extracting does); a directory
  replacing a directory only updates its attributes;
* a hard link refers to the member of that path seen *earlier*; a missing target is an error;
* parent directories missing from the tar are created (0755, owned by root, mtime 0);
* xattrs come from PAX records ``SCHILY.xattr.NAME`` (and libarchive's ``LIBARCHIVE.xattr.NAME``);
  a name without a namespace RAFS stores (``SCHILY.xattr.foo``) is dropped with a warning naming the entry.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
import sys
import tarfile
import urllib.parse
from pathlib import Path
from typing import BinaryIO

from ..errors import BuildError
from ..gzipstream import GzipError, GzipReader
from ..rafs.model import TreeInode
from .chunker import ChunkPipeline, Readable
from .options import BuildStats
from .source_dir import allowed_xattr

log = logging.getLogger("nydus.builder")

IMPLICIT_DIR_MODE = stat.S_IFDIR | 0o755
#: Root entries of an eStargz layer that are not part of the image (its TOC and prefetch landmarks).
ESTARGZ_SPECIAL_FILES = frozenset({b"stargz.index.json", b".prefetch.landmark", b".no.prefetch.landmark"})
_PAX_XATTR = "SCHILY.xattr."
_LIBARCHIVE_XATTR = "LIBARCHIVE.xattr."


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def normalize_member_path(name: str) -> tuple[list[bytes], bool]:
    """Split a member path into components inside the root; also say whether it had to be fixed
    (absolute or containing ``..``)."""
    fixed = name.startswith("/")
    parts: list[bytes] = []
    for part in _raw(name).split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            fixed = True
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return parts, fixed


def _parse_mtime(member: tarfile.TarInfo) -> tuple[int, int]:
    text = member.pax_headers.get("mtime")
    if text:
        try:
            neg = text.startswith("-")
            whole, _, frac = text.lstrip("-").partition(".")
            sec = int(whole or "0")
            nsec = int((frac + "000000000")[:9]) if frac else 0
            if neg:
                sec, nsec = (-sec - 1, 1_000_000_000 - nsec) if nsec else (-sec, 0)
            return sec, nsec
        except ValueError:
            pass
    return int(member.mtime), 0


def _xattrs(member: tarfile.TarInfo, dropped: list[bytes]) -> dict[bytes, bytes]:
    """The member's storable xattrs; names RAFS cannot store (no known namespace) go to ``dropped``."""
    out: dict[bytes, bytes] = {}
    for key, value in member.pax_headers.items():
        if key.startswith(_PAX_XATTR):
            name = _raw(key[len(_PAX_XATTR):])
            data = _raw(value)
        elif key.startswith(_LIBARCHIVE_XATTR):
            name = urllib.parse.unquote_to_bytes(key[len(_LIBARCHIVE_XATTR):])
            try:
                data = base64.b64decode(_raw(value) + b"==")
            except ValueError:
                continue
        else:
            continue
        if allowed_xattr(name):
            out[name] = data
        else:
            dropped.append(name)
    return out


class _Counting:
    """A read-only stream wrapper counting the bytes read (for progress on pipes too)."""

    def __init__(self, raw: Readable, owner: TarSource) -> None:
        self._raw = raw
        self._owner = owner

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._owner.consumed += len(data)
        return data


class TarSource:
    """A tar (or gzip-compressed tar) stream read into a tree while its file data is chunked.

    ``source`` is a path (a regular file, a fifo), ``"-"`` for stdin, or an open binary stream (``read(n)``).
    """

    def __init__(self, source: str | os.PathLike[str] | Readable, *, gzip: bool = False,
                 repeatable: bool = False, estargz: bool = False) -> None:
        self.source = source
        self.gzip = gzip
        self.repeatable = repeatable
        #: leave out eStargz's TOC and landmark files (root entries in ESTARGZ_SPECIAL_FILES)
        self.estargz = estargz
        if source == "-":
            self.name = "<stdin>"
        elif isinstance(source, (str, os.PathLike)):
            self.name = os.fspath(source)
        else:
            self.name = getattr(source, "name", None) or str(source)
        if not isinstance(self.name, str):
            self.name = str(self.name)
        #: ids of directories created implicitly (their attributes are not from the tar)
        self.implicit_dirs: set[int] = set()
        #: bytes consumed from the source stream so far (compressed bytes for targz)
        self.consumed = 0
        #: size of the source when it is a regular file (the progress total), else None
        self.size: int | None = None
        if isinstance(source, (str, os.PathLike)) and source != "-":
            try:
                st = os.stat(source)
                self.size = st.st_size if stat.S_ISREG(st.st_mode) else None
            except OSError:
                self.size = None

    def _open(self) -> tuple[Readable, BinaryIO | None]:
        """Return the stream to read and the file to close afterwards (None when the caller's)."""
        if self.source == "-":
            return sys.stdin.buffer, None
        if isinstance(self.source, (str, os.PathLike)):
            try:
                f = open(Path(self.source), "rb")  # noqa: SIM115 - closed by load
            except OSError as exc:
                raise BuildError(f"{self.name}: cannot open source: {exc.strerror or exc}") from None
            return f, f
        return self.source, None

    def load(self, pipeline: ChunkPipeline, stats: BuildStats) -> TreeInode:
        """Read the whole stream; return the tree with file chunks."""
        root = TreeInode(mode=IMPLICIT_DIR_MODE)
        self.implicit_dirs = {id(root)}
        stats.dirs += 1
        fileobj, owned = self._open()
        try:
            stream: Readable = _Counting(fileobj, self)
            gz = GzipReader(stream, name=self.name) if self.gzip else None
            try:
                # SIM115: tf is used as a context manager below. The ignore: stream mode calls only read(),
                # typeshed asks every fileobj for write/seek/close too.
                tf = tarfile.open(  # type: ignore[call-overload]  # stream mode only reads  # noqa: SIM115
                    fileobj=gz or stream, mode="r|", encoding="utf-8", errors="surrogateescape",
                )
            except tarfile.ReadError as exc:
                if str(exc) == "empty file":
                    return root
                raise
            with tf:
                for member in tf:
                    self._add(root, tf, member, pipeline, stats)
            if gz is not None:
                # the rest after the end-of-archive blocks: every member's CRC32 and ISIZE are checked
                while gz.read(1 << 20):
                    pass
        except GzipError as exc:
            raise BuildError(str(exc)) from None
        except (tarfile.TarError, EOFError, OSError) as exc:
            what = "gzip-compressed tar" if self.gzip else "tar"
            raise BuildError(f"{self.name}: invalid {what}: {exc}") from None
        finally:
            if owned is not None:
                owned.close()
        return root

    def _parent(self, root: TreeInode, parts: list[bytes], member: str) -> TreeInode:
        node = root
        for part in parts:
            child = node.children.get(part)
            if child is None or not child.is_dir:
                if child is not None:
                    log.warning("%s: member %s: %s is not a directory; replaced by one", self.name, member,
                                os.fsdecode(part))
                child = TreeInode(mode=IMPLICIT_DIR_MODE)
                self.implicit_dirs.add(id(child))
                node.children[part] = child
            node = child
        return node

    def _add(
        self, root: TreeInode, tf: tarfile.TarFile, m: tarfile.TarInfo, pipeline: ChunkPipeline,
        stats: BuildStats,
    ) -> None:
        parts, fixed = normalize_member_path(m.name)
        if self.estargz and len(parts) == 1 and parts[0] in ESTARGZ_SPECIAL_FILES:
            return
        if fixed:
            log.warning("%s: member %s has an absolute path or '..'; stored as /%s", self.name, m.name,
                        os.fsdecode(b"/".join(parts)))
        mtime, mtime_nsec = _parse_mtime(m)
        uid, gid = (0, 0) if self.repeatable else (m.uid, m.gid)
        perm = m.mode & 0o7777
        dropped: list[bytes] = []
        xattrs = _xattrs(m, dropped)
        for name in dropped:
            log.warning("%s: member %s: xattr %r has no namespace RAFS can store (user., trusted., "
                        "security., system.posix_acl_*); dropped", self.name, m.name,
                        os.fsdecode(name))

        target: TreeInode | None
        if m.isdir():
            if not parts:
                target = root
            else:
                parent = self._parent(root, parts[:-1], m.name)
                target = parent.children.get(parts[-1])
                if target is None or not target.is_dir:
                    target = TreeInode(mode=IMPLICIT_DIR_MODE)
                    parent.children[parts[-1]] = target
                    stats.dirs += 1
            self.implicit_dirs.discard(id(target))
            target.mode = stat.S_IFDIR | perm
            target.uid, target.gid, target.mtime, target.mtime_nsec = uid, gid, mtime, mtime_nsec
            target.xattrs = xattrs
            return
        if not parts:
            log.warning("%s: member %s names the root but is not a directory; skipped", self.name, m.name)
            return
        parent = self._parent(root, parts[:-1], m.name)
        name = parts[-1]

        if m.islnk():
            link_parts, _ = normalize_member_path(m.linkname)
            target = self._lookup(root, link_parts)
            if target is None or target.is_dir:
                why = "is a directory" if target is not None else "was not found earlier in the archive"
                raise BuildError(f"{self.name}: hard link {m.name} -> {m.linkname}: the target {why}")
            parent.children[name] = target
            stats.hardlinks += 1
            return

        node = TreeInode(mode=perm, uid=uid, gid=gid, mtime=mtime, mtime_nsec=mtime_nsec, xattrs=xattrs)
        if m.isreg():
            node.mode |= stat.S_IFREG
            f = tf.extractfile(m)
            assert f is not None
            pipeline.begin_file(m.offset_data)
            node.chunks, node.size = pipeline.add_file(f, m.size)
            if node.size != m.size:
                raise BuildError(f"{self.name}: member {m.name} is truncated")
            stats.files += 1
        elif m.issym():
            if not m.linkname:
                raise BuildError(f"{self.name}: symlink {m.name} has an empty target")
            node.mode |= stat.S_IFLNK
            node.symlink = _raw(m.linkname)
            node.size = len(node.symlink)
            stats.symlinks += 1
        elif m.ischr() or m.isblk():
            node.mode |= stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            node.rdev = os.makedev(m.devmajor, m.devminor)
            stats.others += 1
        elif m.isfifo():
            node.mode |= stat.S_IFIFO
            stats.others += 1
        else:
            log.warning("%s: member %s has unsupported type %r; skipped", self.name, m.name, m.type)
            return
        parent.children[name] = node

    def implicit_paths(self, root: TreeInode) -> list[bytes]:
        """Paths (``/a/b``) of the directories of ``root`` (this tar's tree) that the tar did not list."""
        out: list[bytes] = []
        stack: list[tuple[bytes, TreeInode]] = [(b"/", root)]
        while stack:
            path, node = stack.pop()
            if id(node) in self.implicit_dirs:
                out.append(path)
            for name, child in node.children.items():
                if child.is_dir:
                    stack.append((path.rstrip(b"/") + b"/" + name, child))
        return sorted(out)

    @staticmethod
    def _lookup(root: TreeInode, parts: list[bytes]) -> TreeInode | None:
        node: TreeInode | None = root
        for part in parts:
            if node is None or not node.is_dir:
                return None
            node = node.children.get(part)
        return node
