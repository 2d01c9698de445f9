"""Walking a data blob from its end: tar trailers, the blob ToC and the inlined bootstrap (§6.3, §6.4).

Blobs built with ``--blob-inline-meta`` or ``--features blob-toc`` follow each section with a 512-byte
tar header naming it, and may end with a ToC (``rafs.blob.toc``, 128-byte entries). Every function
takes ``read(offset, length) -> bytes`` and the blob ``size``, so it works on local files and on
backends. Compressed sections need ``compressor_for(algorithm_id)`` (callers pass the plugin
registry's ``nydus_core.plugins.compressor_by_id``: this package never looks plugins up itself).

Bootstraps inlined into blobs carry the placeholder blob id ``"x" * 64``;
:func:`substitute_placeholder_blob_ids` replaces it with the real id (upstream uses the per-layer
bootstrap's file name, i.e. the OCI layer digest).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import FormatError, IntegrityError, plugin_errors
from ..interfaces import Compressor
from .constants import (
    BLOB_ID_INLINE_PLACEHOLDER,
    COMPRESSOR_LZ4_BLOCK,
    COMPRESSOR_NONE,
    COMPRESSOR_ZSTD,
    TAR_BLOCK,
    TOC_ENTRY_SIZE,
    TOC_FLAG_LZ4,
    TOC_FLAG_NONE,
    TOC_FLAG_ZSTD,
    TOC_NAME_BOOTSTRAP,
    TOC_NAME_TOC,
)
from .model import BlobInfo

Reader = Callable[[int, int], bytes]

_TOC_ENTRY = struct.Struct("<II16s32sQQQ48x")
assert _TOC_ENTRY.size == TOC_ENTRY_SIZE
#: The snapshotter accepts ToC data up to 1 MiB.
MAX_TOC_SIZE = 1 << 20
#: Refuse to inflate an inlined bootstrap beyond this.
MAX_BOOTSTRAP_SIZE = 1 << 30
#: At most this many trailing sections are walked.
MAX_SECTIONS = 64


@dataclass(frozen=True, slots=True)
class TarSection:
    """One section of a blob found through the tar header that follows it."""

    name: str
    offset: int  # offset of the section data in the blob
    size: int
    header_offset: int


@dataclass(frozen=True, slots=True)
class TocEntry:
    """One 128-byte ToC entry."""

    flags: int
    name: str
    digest: bytes  # SHA-256 of the uncompressed section data
    compressed_offset: int
    compressed_size: int
    uncompressed_size: int

    def compressor_id(self, *, where: str = "blob ToC") -> int:
        """Return the algorithm id of the section's compression (upstream's flag order)."""
        if self.flags & TOC_FLAG_NONE:
            return COMPRESSOR_NONE
        if self.flags & TOC_FLAG_ZSTD:
            return COMPRESSOR_ZSTD
        if self.flags & TOC_FLAG_LZ4:
            return COMPRESSOR_LZ4_BLOCK
        raise FormatError(f"{where}: entry {self.name!r} has unknown compression flags {self.flags:#x}")


@dataclass(frozen=True)
class BlobToc:
    """A blob's ToC: its entries plus the raw bytes (entries and tar header) it was read from."""

    entries: list[TocEntry]
    data: bytes
    header: bytes

    @property
    def digest(self) -> bytes:
        """SHA-256 of the entries and their tar header (the bootstrap's ``blob_toc_digest``)."""
        return hashlib.sha256(self.data + self.header).digest()

    @property
    def size(self) -> int:
        """Entries plus tar header (the bootstrap's ``blob_toc_size``)."""
        return len(self.data) + len(self.header)

    def get(self, name: str) -> TocEntry | None:
        """Return the entry named ``name``, or None."""
        return next((e for e in self.entries if e.name == name), None)

    def check_against(self, blob: BlobInfo, *, where: str = "blob ToC") -> None:
        """Raise FormatError if the ToC is not the one the bootstrap's blob entry records."""
        if blob.blob_toc_size and blob.blob_toc_size != self.size:
            raise FormatError(
                f"{where}: ToC is {self.size} bytes, the bootstrap records {blob.blob_toc_size}"
            )
        if any(blob.blob_toc_digest) and blob.blob_toc_digest != self.digest:
            raise FormatError(f"{where}: ToC digest differs from the bootstrap's")


def _octal(field: bytes) -> int | None:
    if field and field[0] & 0x80:  # GNU base-256
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text or any(c not in b"01234567" for c in text):
        return None
    return int(text, 8)


def parse_tar_header(block: bytes) -> tuple[str, int] | None:
    """Return ``(name, size)`` if ``block`` is a valid 512-byte tar header, else None."""
    if len(block) != TAR_BLOCK or block[257:262] != b"ustar":
        return None
    checksum = _octal(block[148:156])
    if checksum is None or checksum != sum(block[:148]) + 8 * 32 + sum(block[156:]):
        return None
    size = _octal(block[124:136])
    raw_name = block[:100].split(b"\0", 1)[0]
    if size is None or not raw_name:
        return None
    try:
        return raw_name.decode(), size
    except UnicodeDecodeError:
        return None


def walk_tar_trailers(read: Reader, size: int, *, limit: int = MAX_SECTIONS) -> list[TarSection]:
    """Return the sections found walking tar trailers back from the end (last section first).

    Stops at the first block that is not a tar header, at the blob start, or after ``limit`` sections.
    """
    out: list[TarSection] = []
    pos = size
    while pos >= TAR_BLOCK and len(out) < limit:
        parsed = parse_tar_header(read(pos - TAR_BLOCK, TAR_BLOCK))
        if parsed is None:
            break
        name, length = parsed
        start = pos - TAR_BLOCK - length
        if start < 0:
            break
        out.append(TarSection(name, start, length, pos - TAR_BLOCK))
        pos = start
    return out


def parse_toc_entries(data: bytes, *, where: str = "blob ToC") -> list[TocEntry]:
    """Decode ToC entries (a multiple of 128 bytes)."""
    if len(data) % TOC_ENTRY_SIZE:
        raise FormatError(f"{where}: ToC of {len(data)} bytes is not a multiple of {TOC_ENTRY_SIZE}")
    out = []
    for flags, _reserved, raw_name, digest, coff, csize, usize in _TOC_ENTRY.iter_unpack(data):
        name = raw_name.split(b"\0", 1)[0].decode("ascii", "replace")
        out.append(TocEntry(flags, name, digest, coff, csize, usize))
    return out


def read_toc(read: Reader, size: int, *, where: str = "blob") -> BlobToc | None:
    """Return the blob's ToC if its last tar header is ``rafs.blob.toc``, else None."""
    if size < TAR_BLOCK:
        return None
    header = read(size - TAR_BLOCK, TAR_BLOCK)
    parsed = parse_tar_header(header)
    if parsed is None or parsed[0] != TOC_NAME_TOC:
        return None
    length = parsed[1]
    if length > MAX_TOC_SIZE or length > size - TAR_BLOCK:
        raise FormatError(f"{where}: ToC of {length} bytes does not fit")
    data = read(size - TAR_BLOCK - length, length)
    if len(data) != length:
        raise FormatError(f"{where}: short read of the ToC (truncated blob?)")
    return BlobToc(parse_toc_entries(data, where=f"{where}: ToC"), data, header)


def read_section(
    read: Reader,
    size: int,
    entry: TocEntry,
    *,
    compressor_for: Callable[[int], Compressor],
    where: str = "blob",
    max_size: int = MAX_BOOTSTRAP_SIZE,
) -> bytes:
    """Return the uncompressed data of ToC ``entry``, checked against its SHA-256."""
    what = f"{where}: ToC entry {entry.name!r}"
    if entry.compressed_offset + entry.compressed_size > size or entry.uncompressed_size > max_size:
        raise FormatError(f"{what}: range {entry.compressed_offset}+{entry.compressed_size} does not fit")
    raw = read(entry.compressed_offset, entry.compressed_size)
    if len(raw) != entry.compressed_size:
        raise FormatError(f"{what}: short read (truncated blob?)")
    algo = entry.compressor_id(where=what)
    if algo == COMPRESSOR_NONE:
        data = raw
    else:
        compressor = compressor_for(algo)
        with plugin_errors(IntegrityError, f"{what}: cannot decompress", reword=IntegrityError):
            data = compressor.decompress(raw, entry.uncompressed_size)
    if len(data) != entry.uncompressed_size:
        raise IntegrityError(f"{what}: {len(data)} bytes, expected {entry.uncompressed_size}")
    if hashlib.sha256(data).digest() != entry.digest:
        raise IntegrityError(f"{what}: SHA-256 mismatch")
    return bytes(data)


def extract_bootstrap(
    read: Reader,
    size: int,
    *,
    compressor_for: Callable[[int], Compressor],
    where: str = "blob",
) -> bytes:
    """Return the bootstrap inlined into a data blob (``--blob-inline-meta``).

    Uses the ToC's ``image.boot`` entry (decompressed per its flags, SHA-256 checked) when the blob
    ends with a ToC; otherwise walks tar trailers back from the end for an ``image.boot`` section
    (legacy, uncompressed). Raises FormatError when the blob holds no bootstrap.
    """
    toc = read_toc(read, size, where=where)
    if toc is not None:
        entry = toc.get(TOC_NAME_BOOTSTRAP)
        if entry is not None:
            return read_section(read, size, entry, compressor_for=compressor_for, where=where)
    for section in walk_tar_trailers(read, size):
        if section.name == TOC_NAME_BOOTSTRAP:
            if section.size > MAX_BOOTSTRAP_SIZE:
                raise FormatError(f"{where}: inlined bootstrap of {section.size} bytes is too large")
            data = read(section.offset, section.size)
            if len(data) != section.size:
                raise FormatError(f"{where}: short read of the inlined bootstrap (truncated blob?)")
            return data
    raise FormatError(f"{where}: no inlined bootstrap (image.boot) found")


def file_reader(path: str | os.PathLike[str]) -> tuple[Reader, int, Callable[[], None]]:
    """Return ``(read, size, close)`` for a local blob file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    size = os.fstat(fd).st_size

    def read(offset: int, length: int) -> bytes:
        return os.pread(fd, length, offset)

    return read, size, lambda: os.close(fd)


def extract_bootstrap_file(path: str | os.PathLike[str], *,
                           compressor_for: Callable[[int], Compressor]) -> bytes:
    """Return the bootstrap inlined into the blob file at ``path``."""
    try:
        read, size, close = file_reader(path)
    except OSError as exc:
        raise FormatError(f"{os.fspath(path)}: cannot read blob: {exc.strerror or exc}") from None
    try:
        return extract_bootstrap(read, size, compressor_for=compressor_for, where=os.fspath(path))
    finally:
        close()


def is_placeholder_blob_id(blob_id: str) -> bool:
    """Whether ``blob_id`` is the placeholder written into bootstraps inlined in their blob."""
    return blob_id == BLOB_ID_INLINE_PLACEHOLDER


def substitute_placeholder_blob_ids(blobs: Iterable[BlobInfo], real_id: str) -> int:
    """Replace the placeholder id of every blob entry by ``real_id``; return how many were replaced."""
    n = 0
    for blob in blobs:
        if is_placeholder_blob_id(blob.blob_id):
            blob.blob_id = real_id
            n += 1
    return n


_HEX64_NAME = re.compile(r"[0-9a-f]{64}")


def blob_id_from_path(path: str | os.PathLike[str]) -> str | None:
    """Return the blob id a bootstrap's file name carries, or None: upstream names per-layer
    bootstraps after their blob (``<id>``, ``sha256:<id>``, ``sha256-<id>``, any extension)."""
    name = os.path.basename(os.fspath(path))
    for prefix in ("sha256:", "sha256-"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    stem = name.split(".", 1)[0]
    return stem if _HEX64_NAME.fullmatch(stem) else None
