"""An in-memory :class:`~nydus_core.rafs.image.RafsImage` plus its data blobs, for tests.

``build_fake_image({"/a/b.txt": b"...", "/link": Symlink("a/b.txt")}, blob_dir=tmp)`` chunks every
file, compresses and digests the chunks with real compressor/digester instances, writes the blobs
(plain chunk data, blob id = sha256 of the file) and returns a :class:`FakeImage` whose chunk
records point into them, laid out as a RAFS v6 builder would (4 KiB aligned uncompressed offsets,
chunks deduplicated by digest and size). It stands in for real bootstraps in unit tests of the read
pipeline; acceptance tests use real images.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nydus_core.builtins import NoneCompressor, Sha256Digester
from nydus_core.interfaces import Compressor, Digester
from nydus_core.rafs.constants import BlobFeatures, ChunkFlags
from nydus_core.rafs.image import RafsImage
from nydus_core.rafs.model import BlobInfo, ChunkInfo, InodeAttrs

__all__ = ["FakeImage", "Symlink", "build_fake_image"]


@dataclass(frozen=True)
class Symlink:
    """A symlink entry for :func:`build_fake_image`."""

    target: str


@dataclass
class _Node:
    ino: int
    mode: int
    size: int = 0
    children: dict[bytes, int] = field(default_factory=dict)
    chunks: list[ChunkInfo] = field(default_factory=list)
    target: bytes = b""
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    parent: int = 0
    nlink: int = 1


class FakeImage(RafsImage):
    """A RAFS image held in memory (no bootstrap file). ``path`` is a made-up name."""

    def __init__(self, nodes: dict[int, _Node], blobs: list[BlobInfo], *, chunk_size: int,
                 compressor: int, digester: int, prefetch: Sequence[int] = (),
                 path: str = "<fake image>") -> None:
        self._nodes = nodes
        self.path = path
        self.version = 6
        self.flags = 0
        self.chunk_size = chunk_size
        self.compressor = compressor
        self.digester = digester
        self.explicit_uid_gid = True
        self.blobs = blobs
        self.root_ino = 1
        self._prefetch = list(prefetch)
        self.chunks_calls = 0

    def _node(self, ino: int) -> _Node:
        try:
            return self._nodes[ino]
        except KeyError:
            raise FileNotFoundError(f"no inode {ino}") from None

    def inode_count(self) -> int:
        """Return the number of inodes."""
        return len(self._nodes)

    def getattr(self, ino: int) -> InodeAttrs:
        """Return the attributes of ``ino``."""
        n = self._node(ino)
        return InodeAttrs(ino=ino, mode=n.mode, uid=0, gid=0, size=n.size, nlink=n.nlink,
                          mtime=0, mtime_nsec=0, rdev=0, has_xattr=bool(n.xattrs))

    def lookup(self, parent: int, name: bytes) -> int | None:
        """Return the child ``name`` of ``parent``."""
        return self._node(parent).children.get(name)

    def readdir(self, ino: int, offset: int = 0) -> Iterator[tuple[bytes, int]]:
        """Yield the entries of directory ``ino`` in name order."""
        items = sorted(self._node(ino).children.items())
        yield from items[offset:]

    def readlink(self, ino: int) -> bytes:
        """Return the symlink target."""
        return self._node(ino).target

    def xattrs(self, ino: int) -> dict[bytes, bytes]:
        """Return the xattrs of ``ino``."""
        return dict(self._node(ino).xattrs)

    def chunks(self, ino: int) -> Sequence[ChunkInfo]:
        """Return the chunk records of ``ino``."""
        self.chunks_calls += 1
        return list(self._node(ino).chunks)

    def prefetch_inodes(self) -> list[int]:
        """Return the prefetch table."""
        return list(self._prefetch)

    def parent(self, ino: int) -> int | None:
        """Return the parent directory."""
        return self._node(ino).parent or None


def build_fake_image(
    files: Mapping[str, bytes | Symlink | None],
    *,
    blob_dir: str | os.PathLike[str] | None = None,
    chunk_size: int = 0x10000,
    compressor: Compressor | None = None,
    digester: Digester | None = None,
    blob_of: Callable[[str], int] | None = None,
    prefetch: Sequence[str] = (),
    xattrs: Mapping[str, Mapping[bytes, bytes]] | None = None,
) -> tuple[FakeImage, dict[str, bytes]]:
    """Build a :class:`FakeImage` and its blobs from ``files`` (path -> bytes, Symlink, or None for a
    directory). Returns the image and ``{blob_id: blob bytes}``; with ``blob_dir`` the blobs are also
    written there as ``<blob_id>``. ``blob_of(path)`` picks the blob index of each file (default 0).
    """
    comp = compressor or NoneCompressor()
    dig = digester or Sha256Digester()
    nodes: dict[int, _Node] = {1: _Node(1, stat.S_IFDIR | 0o755, nlink=2)}
    by_path: dict[str, int] = {"/": 1}

    def ensure_dir(path: str) -> int:
        if path in by_path:
            return by_path[path]
        parent_path, _, name = path.rstrip("/").rpartition("/")
        parent = ensure_dir(parent_path or "/")
        ino = len(nodes) + 1
        nodes[ino] = _Node(ino, stat.S_IFDIR | 0o755, parent=parent, nlink=2)
        nodes[parent].children[os.fsencode(name)] = ino
        nodes[parent].nlink += 1
        by_path[path] = ino
        return ino

    # blob-building state
    blob_data: list[bytearray] = []
    blob_cursor: list[int] = []
    blob_chunks: list[dict[tuple[bytes, int], ChunkInfo]] = []

    def blob_state(index: int) -> None:
        while len(blob_data) <= index:
            blob_data.append(bytearray())
            blob_cursor.append(0)
            blob_chunks.append({})

    for path in sorted(files):
        content = files[path]
        norm = "/" + path.strip("/")
        if content is None:
            ensure_dir(norm)
            continue
        parent_path, _, name = norm.rpartition("/")
        parent = ensure_dir(parent_path or "/")
        ino = len(nodes) + 1
        if isinstance(content, Symlink):
            target = os.fsencode(content.target)
            node = _Node(ino, stat.S_IFLNK | 0o777, size=len(target), target=target, parent=parent)
        else:
            node = _Node(ino, stat.S_IFREG | 0o644, size=len(content), parent=parent)
            bi = blob_of(norm) if blob_of else 0
            blob_state(bi)
            for off in range(0, len(content), chunk_size):
                piece = content[off:off + chunk_size]
                digest = dig.digest(piece)
                known = blob_chunks[bi].get((digest, len(piece)))
                if known is None:
                    packed = comp.compress(piece)
                    flags = 0
                    if len(packed) < len(piece) and comp.name != "none":
                        flags = ChunkFlags.COMPRESSED
                    else:
                        packed = bytes(piece)
                    known = ChunkInfo(
                        block_id=digest, blob_index=bi, flags=int(flags),
                        compressed_size=len(packed), uncompressed_size=len(piece),
                        compressed_offset=len(blob_data[bi]), uncompressed_offset=blob_cursor[bi],
                        file_offset=0, index=len(blob_chunks[bi]),
                    )
                    blob_data[bi] += packed
                    blob_cursor[bi] += (len(piece) + 4095) & ~4095
                    blob_chunks[bi][(digest, len(piece))] = known
                node.chunks.append(known.with_file_offset(off))
        if xattrs and norm in xattrs:
            node.xattrs = dict(xattrs[norm])
        nodes[ino] = node
        nodes[parent].children[os.fsencode(name)] = ino
        by_path[norm] = ino

    blobs: list[BlobInfo] = []
    out: dict[str, bytes] = {}
    for bi, data in enumerate(blob_data):
        raw = bytes(data)
        blob_id = hashlib.sha256(raw).hexdigest()
        out[blob_id] = raw
        blobs.append(BlobInfo(
            blob_id=blob_id, blob_index=bi, chunk_size=chunk_size, chunk_count=len(blob_chunks[bi]),
            compressor=comp.algorithm_id or 0, digester=dig.algorithm_id or 0,
            features=int(BlobFeatures.ALIGNED), compressed_size=len(raw),
            uncompressed_size=blob_cursor[bi],
        ))
        if blob_dir is not None:
            Path(blob_dir, blob_id).write_bytes(raw)
    image = FakeImage(
        nodes, blobs, chunk_size=chunk_size, compressor=comp.algorithm_id or 0,
        digester=dig.algorithm_id or 0, prefetch=[by_path["/" + p.strip("/")] for p in prefetch],
    )
    return image, out
