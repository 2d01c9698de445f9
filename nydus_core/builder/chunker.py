"""Cut file data into chunks, deduplicate them and append new ones to the data blob.

A chunk is identified by ``(digest, size)``. Known chunks (from this build, the parent image or a
chunk dict) are referenced instead of written again. Chunk records handed out may be shared between
files; :func:`finalize_chunks` gives every file records with the right ``file_offset``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from ..interfaces import Digester
from ..rafs.blob_writer import BlobWriter
from ..rafs.model import ChunkInfo, TreeInode
from .options import BuildStats, ProgressCallback

ChunkKey = tuple[bytes, int]


class Readable(Protocol):
    """Anything with ``read(n)`` (a file, a tar member stream)."""

    def read(self, n: int = -1, /) -> bytes: ...


def read_full(f: Readable, n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads; fewer only at end of stream."""
    data = f.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class ChunkSink(Protocol):
    """Where new chunks go: a :class:`~nydus_core.rafs.blob_writer.BlobWriter`, or a ``*-ref``
    build's record maker (which also wants each chunk's offset in the source, via ``at``)."""

    def add_chunk(self, data: bytes, digest: bytes | None = None, /) -> ChunkInfo: ...


class ChunkPipeline:
    """Chunking + dedup + blob writing for one build.

    ``writer`` receives new chunks (``None`` when nothing may be written: then a new chunk is an
    error raised by ``on_no_writer``). ``known`` maps ``(digest, size)`` to reusable records.
    ``progress(done, total)`` is called after each chunk, ``done`` being ``position()`` when given
    (e.g. bytes consumed from a tar stream) or else the file bytes read so far.
    """

    def __init__(
        self,
        writer: BlobWriter | ChunkSink | None,
        digester: Digester,
        chunk_size: int,
        *,
        known: dict[ChunkKey, ChunkInfo] | None = None,
        stats: BuildStats | None = None,
        progress: ProgressCallback | None = None,
        total: int | None = None,
        on_no_writer: Callable[[], Exception] | None = None,
        position: Callable[[], int] | None = None,
    ) -> None:
        self.writer = writer
        self.digester = digester
        self.chunk_size = chunk_size
        self.known: dict[ChunkKey, ChunkInfo] = known if known is not None else {}
        self.stats = stats or BuildStats()
        self.progress = progress
        self.total = total
        self._on_no_writer = on_no_writer
        self._position = position
        self._at: Callable[[int], None] | None = getattr(writer, "at", None)
        self._source_offset = 0

    def begin_file(self, source_offset: int) -> None:
        """Say where the next file's data starts in the source stream (``*-ref`` builds use it)."""
        self._source_offset = source_offset

    def add_file(self, f: Readable, size_hint: int | None = None) -> tuple[list[ChunkInfo], int]:
        """Chunk everything ``f`` yields; return the chunk records and the byte count.

        With ``size_hint`` (the size ``stat`` reported) no more than that is read, in exact-size
        pieces (no chunk-size buffers for small files); a shorter stream just ends earlier.
        """
        cs = self.chunk_size
        chunks: list[ChunkInfo] = []
        size = 0
        digest = self.digester.digest
        stats = self.stats
        remaining = size_hint
        while True:
            if remaining is None:
                data = read_full(f, cs)
            elif remaining > 0:
                data = read_full(f, min(cs, remaining))
                remaining -= len(data)
            else:
                break
            if not data:
                break
            n = len(data)
            size += n
            d = digest(data)
            key = (d, n)
            chunk = self.known.get(key)
            if chunk is None:
                if self.writer is None:
                    raise (self._on_no_writer() if self._on_no_writer else RuntimeError("no blob writer"))
                if self._at is not None:
                    self._at(self._source_offset)
                chunk = self.writer.add_chunk(data, d)
                self.known[key] = chunk
                stats.chunks_new += 1
            else:
                stats.chunks_dedup += 1
            chunks.append(chunk)
            self._source_offset += n
            stats.chunks += 1
            stats.bytes_read += n
            if self.progress is not None:
                self.progress(self._position() if self._position else stats.bytes_read, self.total)
            if n < cs and remaining is None:
                break
        return chunks, size

    def add_stored(self, files: Sequence[tuple[int, bytes, bytes, bool]]) -> list[ChunkInfo | None]:
        """Add one-chunk files that a worker process read, digested and compressed: ``(size,
        digest, stored, compressed)`` each, ``stored`` as :meth:`BlobWriter.add_stored` takes it.
        Deduplicated and counted as :meth:`add_file` does (progress reported once for them all), so
        the blob and records are those of the serial path; an empty file gets ``None``."""
        if not isinstance(self.writer, BlobWriter):
            raise RuntimeError("add_stored needs a BlobWriter")
        known = self.known
        found: list[ChunkInfo | int | None] = []  # a known record, a new chunk's position, or None
        fresh: dict[ChunkKey, int] = {}
        new_items: list[tuple[int, bytes, bytes, bool]] = []
        nbytes = 0
        for item in files:
            size = item[0]
            if not size:
                found.append(None)
                continue
            nbytes += size
            key = (item[1], size)
            chunk = known.get(key)
            if chunk is not None:
                found.append(chunk)
                continue
            j = fresh.get(key)
            if j is None:  # new here (a second copy in this batch refers to the first)
                j = fresh[key] = len(new_items)
                new_items.append(item)
            found.append(j)
        new = len(new_items)
        made = self.writer.add_stored_many(new_items) if new_items else []
        for key, j in fresh.items():
            known[key] = made[j]
        out: list[ChunkInfo | None] = [made[c] if isinstance(c, int) else c for c in found]
        stats = self.stats
        chunks = len(files) - out.count(None)
        stats.chunks_new += new
        stats.chunks_dedup += chunks - new
        stats.chunks += chunks
        stats.bytes_read += nbytes
        self._source_offset += nbytes
        if self.progress is not None:
            self.progress(self._position() if self._position else stats.bytes_read, self.total)
        return out


def unique_inodes(root: TreeInode) -> Iterable[TreeInode]:
    """Yield every distinct inode of the tree once (hard links once), root first."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(node.children.values())


def remap_blob_indexes(root: TreeInode, mapping: dict[int, int]) -> None:
    """Rewrite ``blob_index`` of every chunk record in the tree (each record object once)."""
    done: set[int] = set()
    for node in unique_inodes(root):
        for c in node.chunks:
            if id(c) in done:
                continue
            done.add(id(c))
            c.blob_index = mapping.get(c.blob_index, c.blob_index)


def finalize_chunks(root: TreeInode, chunk_size: int) -> None:
    """Give each file chunk records with ``file_offset = k * chunk_size``: a record already at its
    offset is kept (records may stay shared between files; nothing changes them afterwards), any
    other is replaced by a copy."""
    for node in unique_inodes(root):
        chunks = node.chunks
        if chunks and any(c.file_offset != k * chunk_size for k, c in enumerate(chunks)):
            node.chunks = [c if c.file_offset == k * chunk_size else c.with_file_offset(k * chunk_size)
                           for k, c in enumerate(chunks)]
