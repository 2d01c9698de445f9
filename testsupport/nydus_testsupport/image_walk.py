"""Touch every part of an opened RAFS image, for hostile-input and round-trip tests.

:func:`exercise_image` walks the tree and calls every reader primitive on every entry (getattr,
lookup, readdir with offsets, readlink, xattrs, chunks, ranged chunks, the v6 chunk table, the
prefetch table) and, given a :class:`~nydus_core.tools.chunkreader.BlobDirReader`, reads file data.
It returns the number of entries seen; any problem surfaces as the reader's exception.
"""

from __future__ import annotations

from typing import Any

from nydus_core.rafs.image import RafsImage


def exercise_image(
    image: RafsImage,
    reader: Any | None = None,
    *,
    max_entries: int = 20000,
    max_read: int = 1 << 20,
) -> int:
    """Exercise every reader primitive on ``image``; return the number of entries walked."""
    image.inode_count()
    for ino in image.prefetch_inodes()[:64]:
        image.getattr(ino)
    table = getattr(image, "chunk_table", None)
    if table is not None:
        table()
    seen = 0
    for _path, ino in image.walk():
        seen += 1
        if seen > max_entries:
            break
        attrs = image.getattr(ino)
        image.xattrs(ino)
        image.parent(ino)
        if attrs.is_dir:
            names = []
            for name, _child in image.readdir(ino):
                names.append(name)
                image.lookup(ino, name)
                if len(names) > 64:
                    break
            if names:
                list(image.readdir(ino, len(names) // 2))
            image.lookup(ino, b"\xff-not-there")
        elif attrs.is_symlink:
            image.readlink(ino)
        elif attrs.is_reg:
            chunks = image.chunks(ino)
            ranged = getattr(image, "chunks_for_range", None)
            if ranged is not None and attrs.size:
                ranged(ino, attrs.size // 2, 4096)
            if reader is not None and chunks:
                reader.read(image, ino, 0, max_read)
    return seen
