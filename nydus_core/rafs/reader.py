"""Open a RAFS bootstrap, detecting v5 or v6 (rafs-format.md §1).

``open_bootstrap(path)`` maps the file; ``open_bootstrap_bytes(data, name)`` reads a bootstrap held in
memory (for instance one extracted from a data blob with :func:`nydus_core.rafs.toc.extract_bootstrap`).
"""

from __future__ import annotations

import os
import struct

from .constants import EROFS_MAGIC, EROFS_SUPER_OFFSET, RAFS_V5_MAGIC, RAFS_V5_VERSION
from .image import RafsImage
from .mapped import MappedBootstrap

_U32 = struct.Struct("<I")


def _open(m: MappedBootstrap) -> RafsImage:
    try:
        buf = m.buf
        if m.size >= 8 and _U32.unpack_from(buf, 0)[0] == RAFS_V5_MAGIC and _U32.unpack_from(buf, 4)[0] == (
            RAFS_V5_VERSION
        ):
            from .v5 import V5Image

            return V5Image(m)
        if m.size >= EROFS_SUPER_OFFSET + 4 and _U32.unpack_from(buf, EROFS_SUPER_OFFSET)[0] == EROFS_MAGIC:
            from .v6 import V6Image

            return V6Image(m)
        raise m.error("not a RAFS bootstrap (bad magic)")
    except BaseException:
        m.close()
        raise


def open_bootstrap(path: str | os.PathLike[str]) -> RafsImage:
    """Open the bootstrap file at ``path`` (mmap, read-only) and return a lazy :class:`RafsImage`.

    Raises :class:`~nydus_core.errors.FormatError` (``"PATH: ..."``) for anything that is not a valid
    RAFS v5/v6 bootstrap and :class:`~nydus_core.errors.UnsupportedFeatureError` for valid images using
    features nydus-py does not read (zran, batch, encryption, tarfs).
    """
    p = os.fspath(path)
    return _open(MappedBootstrap(p))


def open_bootstrap_bytes(data: bytes, name: str = "<bootstrap>") -> RafsImage:
    """Open a bootstrap held in memory; ``name`` is used in error messages."""
    return _open(MappedBootstrap(name, data))
