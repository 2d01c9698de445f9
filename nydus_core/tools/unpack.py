"""``nydus-image unpack``: write an image's tree as a tar (contents, modes, owners, mtimes, xattrs,
symlinks, hard links, devices and fifos; sockets cannot be represented in tar and are skipped)."""

from __future__ import annotations

import base64
import io
import logging
import os
import stat
import tarfile
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from ..rafs.image import RafsImage
from .datasource import ChunkSource

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)


class _FileReader(io.RawIOBase):
    """A file-like view of one regular file of the image, read chunk by chunk on demand."""

    def __init__(self, source: ChunkSource, image: RafsImage, ino: int, size: int) -> None:
        self.source, self.image, self.ino, self.size, self.pos = source, image, ino, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: WriteableBuffer) -> int:
        view = memoryview(buf)
        n = min(view.nbytes, self.size - self.pos, self.image.chunk_size)
        if n <= 0:
            return 0
        data = self.source.read(self.image, self.ino, self.pos, n)
        view[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def unpack_to_tar(
    image: RafsImage,
    source: ChunkSource | None,
    out: BinaryIO,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the whole tree of ``image`` as a PAX tar to ``out``; return the number of entries.

    The root appears as ``.``; other names are relative (``etc/passwd``). The first path of a hard
    link group carries the data; the others are hard-link entries naming it. Xattrs use
    ``SCHILY.xattr.*`` records (``LIBARCHIVE.xattr.*``, escaped, for names that are not UTF-8), mtimes
    keep nanoseconds in the PAX ``mtime`` record.
    """
    first_path: dict[int, str] = {}
    count = 0
    done = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        for path, ino in image.walk():
            a = image.getattr(ino)
            name = "." if path == b"/" else _text(path.lstrip(b"/"))
            info = tarfile.TarInfo(name)
            info.mode = stat.S_IMODE(a.mode)
            info.uid, info.gid = a.uid, a.gid
            info.uname = info.gname = ""
            info.mtime = a.mtime
            pax: dict[str, str] = {}
            if a.mtime_nsec:
                pax["mtime"] = f"{a.mtime}.{a.mtime_nsec:09d}"
            if a.has_xattr:
                for k, v in sorted(image.xattrs(ino).items()):
                    try:
                        pax["SCHILY.xattr." + k.decode("utf-8")] = _text(v)
                    except UnicodeDecodeError:  # a PAX keyword is UTF-8: libarchive's escaped form
                        key = "LIBARCHIVE.xattr." + urllib.parse.quote_from_bytes(k, safe="")
                        pax[key] = base64.b64encode(v).decode("ascii")
            fileobj = None
            if a.is_reg and ino in first_path:
                info.type = tarfile.LNKTYPE
                info.linkname = first_path[ino]
            elif a.is_reg:
                if a.nlink > 1:
                    first_path[ino] = name
                info.type = tarfile.REGTYPE
                info.size = a.size
                if a.size:
                    if source is None:
                        from ..errors import UsageError

                        raise UsageError("unpacking file data needs the blobs: give --blob-dir, --blob, "
                                         "--backend-type or --config")
                    fileobj = io.BufferedReader(_FileReader(source, image, ino, a.size),
                                                buffer_size=image.chunk_size)
            elif a.is_dir:
                info.type = tarfile.DIRTYPE
            elif a.is_symlink:
                info.type = tarfile.SYMTYPE
                info.linkname = _text(image.readlink(ino))
            elif stat.S_ISCHR(a.mode) or stat.S_ISBLK(a.mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(a.mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(a.rdev), os.minor(a.rdev)
            elif stat.S_ISFIFO(a.mode):
                info.type = tarfile.FIFOTYPE
            else:
                log.warning("%s: skipping socket %s (tar cannot hold sockets)", image.path, name)
                continue
            info.pax_headers = pax
            tar.addfile(info, fileobj)
            count += 1
            if fileobj is not None:
                done += a.size
                if progress:
                    progress(done)
    return count
