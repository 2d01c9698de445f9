"""The root filesystem an OCI image describes, computed from its layer tars (an independent model
used by ``nydusify check``; it shares no code with the builder).

Layers apply bottom to top with the OCI rules: ``.wh.NAME`` hides NAME of the layers below,
``.wh..wh..opq`` hides everything the layers below have in its directory; an entry replaces the
one below (a directory over a directory keeps the children); parent directories missing from a
layer's tar keep the attributes they had below (or are implicit). Hard links share one entry.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from nydus_core.errors import FormatError

from .layerdata import open_layer_tar

if TYPE_CHECKING:
    from .streams import IterStream

WHITEOUT_PREFIX = ".wh."
#: Root entries of an eStargz layer that are not part of the image.
ESTARGZ_FILES = frozenset({"stargz.index.json", ".prefetch.landmark", ".no.prefetch.landmark"})
OPAQUE_MARKER = ".wh..wh..opq"
_KINDS = {tarfile.DIRTYPE: "dir", tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file",
          tarfile.CONTTYPE: "file", tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "chr",
          tarfile.BLKTYPE: "blk", tarfile.FIFOTYPE: "fifo"}


@dataclass(eq=False)
class Entry:
    """One inode of the rootfs (shared by the paths of a hard-link group)."""

    kind: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    target: str = ""
    rdev: tuple[int, int] = (0, 0)
    xattrs: dict[str, bytes] = field(default_factory=dict)
    sha256: str | None = None
    implicit: bool = False


def _norm(name: str) -> str:
    """``/a/b`` for a tar member name (``./a/b/``, ``a/b``, ``/a/b``...)."""
    return posixpath.normpath("/" + name.lstrip("/"))


def _ancestors(path: str) -> Iterable[str]:
    p = posixpath.dirname(path)
    while p != "/":
        yield p
        p = posixpath.dirname(p)


class OciRootfs:
    """Paths -> :class:`Entry`, built by :meth:`apply_layer` calls, bottom layer first."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {"/": Entry("dir", implicit=True)}

    def _entry(self, ti: tarfile.TarInfo, tar: tarfile.TarFile, layer: dict[str, Entry], where: str) -> Entry:
        if ti.type == tarfile.LNKTYPE:
            target = _norm(ti.linkname)
            found = layer.get(target) or self.entries.get(target)
            if found is None:
                raise FormatError(f"{where}: hard link {ti.name} -> {ti.linkname}: target not found")
            return found
        kind = _KINDS.get(ti.type)
        if kind is None:
            raise FormatError(f"{where}: {ti.name}: unsupported tar entry type {ti.type!r}")
        xattrs = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
                  for k, v in ti.pax_headers.items() if k.startswith("SCHILY.xattr.")}
        e = Entry(kind, ti.mode & 0o7777, ti.uid, ti.gid, int(ti.mtime), xattrs=xattrs)
        if kind == "file":
            e.size = ti.size
            h = hashlib.sha256()
            fh = tar.extractfile(ti)
            if fh is not None:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
            e.sha256 = h.hexdigest()
        elif kind == "symlink":
            e.target = ti.linkname
            e.size = len(ti.linkname.encode())
        elif kind in ("chr", "blk"):
            e.rdev = (ti.devmajor, ti.devminor)
        return e

    def apply_layer(self, stream: BinaryIO | IterStream, *, where: str = "layer", estargz: bool = False
                    ) -> None:
        """Apply one layer tar (gzip, zstd or plain, read as a stream) on top of what is there.

        A gzip layer is read to its end, so every member's CRC32 and ISIZE are checked. With
        ``estargz`` the layer's TOC and landmark files (root entries) are left out."""
        layer: dict[str, Entry] = {}
        whiteouts: set[str] = set()
        opaques: set[str] = set()
        try:
            data = open_layer_tar(stream, name=where)
            with tarfile.open(fileobj=data, mode="r|*") as tar:
                for ti in tar:
                    path = _norm(ti.name)
                    if estargz and path.lstrip("/") in ESTARGZ_FILES:
                        continue
                    base = posixpath.basename(path)
                    parent = posixpath.dirname(path)
                    if base == OPAQUE_MARKER:
                        opaques.add(parent)
                        continue
                    if base.startswith(WHITEOUT_PREFIX):
                        whiteouts.add(posixpath.join(parent, base[len(WHITEOUT_PREFIX):]))
                        continue
                    layer[path] = self._entry(ti, tar, layer, where)
            while data.read(1 << 20):  # the rest (gzip trailers, zstd frame ends) is checked too
                pass
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise FormatError(f"{where}: not a readable tar: {exc}") from None
        # what this layer hides of the layers below
        gone = set(whiteouts)
        for path, e in layer.items():
            old = self.entries.get(path)
            if old is not None and (e.kind != "dir" or old.kind != "dir"):
                gone.add(path)  # a replaced non-directory, or a directory replaced by a file
        self._remove(gone, include_self=True)
        self._remove(opaques, include_self=False)
        for path in sorted(layer, key=lambda p: p.count("/")):
            for anc in sorted(_ancestors(path), key=len):
                if anc not in self.entries or self.entries[anc].kind != "dir":
                    self.entries[anc] = Entry("dir", implicit=True)
            self.entries[path] = layer[path]

    def _remove(self, roots: set[str], *, include_self: bool) -> None:
        if not roots:
            return
        for path in list(self.entries):
            if path == "/":
                continue
            if (include_self and path in roots) or any(a in roots for a in _ancestors(path)) \
                    or ("/" in roots and not include_self):
                del self.entries[path]
