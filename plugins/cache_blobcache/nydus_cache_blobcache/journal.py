"""The readiness journal of one cached blob: ``<blob_id>.chunk_map``.

An append-only file: a 64-byte header, then 32-byte records, each saying "the chunk at this
uncompressed offset, of this size and digest prefix, is ready" (or "was evicted"). Every record
carries a CRC32 of itself, so a torn or garbage record is recognised and ignored (with everything
after it). The in-memory view is a :class:`~.readymap.ReadyMap` (offset, size and digest prefix per
chunk index). The record's ``slot`` field holds the chunk's index + 1 (0: unknown, as in journals
written before it was recorded), so a journal loads straight into the compact map.

Why a journal keyed by uncompressed offset rather than a bitmap keyed by chunk index: chunk
indexes are 0 in every chunk of pre-2022 RAFS v5 images (rafs-format.md §3), so an index-keyed
map would mix their chunks up; offsets are unique in every image version. The digest prefix makes
each record self-checking: a record only vouches for the exact chunk it was written for.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable

from .readymap import TAG_SIZE, ReadyMap

__all__ = ["HEADER_SIZE", "RECORD_SIZE", "TAG_SIZE", "ChunkJournal", "JournalState", "parse_journal"]

MAGIC = b"NYPYCMAP"
VERSION = 1
HEADER = struct.Struct("<8sII Q I 32x I")  # magic, version, record size, blob usize, chunk count, crc
HEADER_SIZE = HEADER.size
RECORD = struct.Struct("<QII8sII")  # uncompressed offset, size, op, digest prefix, slot, crc
RECORD_SIZE = RECORD.size
OP_READY = 1
OP_EVICTED = 2

assert HEADER_SIZE == 64 and RECORD_SIZE == 32


def _header(uncompressed_size: int, chunk_count: int) -> bytes:
    body = HEADER.pack(MAGIC, VERSION, RECORD_SIZE, uncompressed_size, chunk_count, 0)
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


def encode_record(offset: int, size: int, tag: bytes, op: int = OP_READY, *, index: int = -1) -> bytes:
    """Return one 32-byte journal record (``index``: the chunk's index in its blob, -1 unknown)."""
    slot = index + 1 if 0 <= index < 0xFFFFFFFF else 0
    body = RECORD.pack(offset, size, op, tag[:TAG_SIZE].ljust(TAG_SIZE, b"\0"), slot, 0)[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


class JournalState:
    """The result of reading a journal: ready chunks, and how much of the file is valid."""

    __slots__ = ("ready", "records", "valid", "valid_length")

    def __init__(self, chunk_count: int = 0) -> None:
        self.ready = ReadyMap(chunk_count)
        self.records = 0
        self.valid = False
        self.valid_length = 0


def parse_journal(data: bytes) -> JournalState:
    """Decode a journal file's bytes; stops at the first bad record."""
    if len(data) < HEADER_SIZE:
        return JournalState()
    magic, version, rsize, _usize, count, crc = HEADER.unpack_from(data, 0)
    if (magic != MAGIC or version != VERSION or rsize != RECORD_SIZE
            or crc != zlib.crc32(data[:HEADER_SIZE - 4])):
        return JournalState()
    st = JournalState(count)
    st.valid = True
    pos = HEADER_SIZE
    ready = st.ready
    end = len(data) - RECORD_SIZE
    while pos <= end:
        off, size, op, tag, slot, rcrc = RECORD.unpack_from(data, pos)
        if rcrc != zlib.crc32(data[pos:pos + RECORD_SIZE - 4]):
            break
        if op == OP_READY:
            ready.add(off, size, tag, slot - 1)
        elif op == OP_EVICTED:
            ready.pop(off, slot - 1)
        else:
            break
        pos += RECORD_SIZE
        st.records += 1
    st.valid_length = pos
    return st


class ChunkJournal:
    """An open journal file. Appends are single ``write`` calls on an ``O_APPEND`` descriptor."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: str, *, exclusive: bool, uncompressed_size: int,
             chunk_count: int) -> tuple[ChunkJournal | None, JournalState]:
        """Open (and, when ``exclusive``, repair or compact) the journal at ``path``.

        Returns ``(None, state)`` when the journal is unusable and we may not rewrite it (another
        process owns it): the cache then works in memory for this blob.
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        st = parse_journal(data)
        if exclusive:
            needs_rewrite = (not st.valid or st.valid_length != len(data)
                             or st.records > 2 * len(st.ready) + 1024)
            if needs_rewrite:
                if not st.valid:
                    st.ready = ReadyMap(chunk_count)
                cls._rewrite(path, st.ready, uncompressed_size, chunk_count)
                st.valid = True
        elif not st.valid:
            return None, st
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        return cls(path, fd), st

    @staticmethod
    def _rewrite(path: str, ready: ReadyMap, uncompressed_size: int, chunk_count: int) -> None:
        """Write a compact journal of ``ready`` next to ``path`` and rename it into place."""
        tmp = f"{path}.tmp.{os.getpid()}"
        parts = [_header(uncompressed_size, chunk_count)]
        parts.extend(encode_record(off, size, tag, index=index)
                     for off, size, tag, index in sorted(ready.entries()))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"".join(parts))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def append(self, records: Iterable[bytes]) -> None:
        """Append records in one write."""
        buf = b"".join(records)
        if buf:
            os.write(self.fd, buf)

    def sync(self) -> None:
        """Make appended records durable."""
        os.fdatasync(self.fd)

    def close(self) -> None:
        """Close the descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
