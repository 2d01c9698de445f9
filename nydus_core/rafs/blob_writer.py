"""Write one Nydus data blob: chunk data, blob.meta, and optionally digests, inlined bootstrap and ToC.

Layout (rafs-format.md §6.5), each bracketed part only when the feature asks for it::

    chunk data [tar image.blob] | CI array | 4 KiB header [tar blob.meta]
    [blob.digest, tar] [bootstrap, tar image.boot] [ToC entries, tar rafs.blob.toc]

The blob is written strictly sequentially (the output may be a pipe). Its id is the sha256 of
every byte written, so ``blob_id == sha256(blob file)`` (we deliberately do not copy upstream's quirk
of leaving ``blob.digest`` out of the hash, §6.4).

Chunks may be compressed on a thread pool (``workers``): the returned :class:`ChunkInfo` then has
its ``compressed_offset``/``compressed_size``/``flags`` filled in when the chunk reaches the file,
at the latest when :meth:`BlobWriter.finish` returns.
"""

from __future__ import annotations

import collections
import hashlib
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from ..errors import BuildError
from ..interfaces import Compressor, Digester
from .checks import recorded_id
from .constants import (
    BLOB_ID_INLINE_PLACEHOLDER,
    BLOB_META_HEADER_SIZE,
    BLOB_META_MAGIC,
    COMPRESSOR_NONE,
    EROFS_BLOCK_SIZE,
    TAR_BLOCK,
    TOC_FLAG_NONE,
    TOC_NAME_BLOB,
    TOC_NAME_BLOB_DIGEST,
    TOC_NAME_BLOB_META,
    TOC_NAME_BLOB_META_HEADER,
    TOC_NAME_BOOTSTRAP,
    TOC_NAME_TOC,
    BlobFeatures,
    ChunkFlags,
    align_up,
)
from .model import BlobInfo, ChunkInfo

__all__ = [
    "BlobWriter",
    "pack_blob_meta_header",
    "pack_chunk_info_v1",
    "pack_toc_entry",
    "tar_header",
]

_CI_MAX_SIZE = 1 << 24  # chunk sizes in a v1 record are 24 bits (size - 1)
_CI_MAX_COMPRESSED_OFFSET = 1 << 40
_CI_MAX_UNCOMPRESSED_OFFSET = 1 << 44
_TOC_ENTRY = struct.Struct("<II16s32sQQQ48s")
_META_HEADER = struct.Struct("<IIIIQQQQQI")
_GATHER = 1 << 20
_COMPRESSED = int(ChunkFlags.COMPRESSED)  # a plain int: IntFlag arithmetic costs ~2 us a chunk


# -- section encoders (pure functions) ------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    """``width - 1`` zero-padded octal digits and a NUL, as Rust's tar crate writes them."""
    return format(value, "o").rjust(width - 1, "0").encode() + b"\0"


def _tar_number(value: int, width: int) -> bytes:
    """A numeric tar field: octal when it fits, else GNU base-256 (as ``tar::Header::set_size``)."""
    if value < 8 ** (width - 1):
        return _octal(value, width)
    raw = bytearray(value.to_bytes(8, "big").rjust(width, b"\0"))
    raw[0] |= 0x80
    return bytes(raw)


def tar_header(name: str, size: int) -> bytes:
    """Return the 512-byte GNU tar header that follows a blob section (rafs-format.md §6.3).

    Byte-identical to Rust ``tar::Header::new_gnu()`` with path, regular type, size, zero mtime
    and checksum set: mode/uid/gid are zero bytes, magic ``"ustar "`` + version ``" \\0"``.
    """
    raw_name = name.encode()
    if len(raw_name) > 100:
        raise ValueError(f"tar section name too long: {name!r}")
    hdr = bytearray(TAR_BLOCK)
    hdr[0 : len(raw_name)] = raw_name
    hdr[124:136] = _tar_number(size, 12)
    hdr[136:148] = _octal(0, 12)
    hdr[156:157] = b"0"
    hdr[257:263] = b"ustar "
    hdr[263:265] = b" \0"
    checksum = sum(hdr) + 8 * ord(" ")  # the checksum field counts as eight spaces
    hdr[148:156] = _octal(checksum, 8)
    return bytes(hdr)


def pack_chunk_info_v1(chunk: ChunkInfo) -> bytes:
    """Return the 16-byte blob.meta v1 record of ``chunk`` (rafs-format.md §6.2)."""
    usize = chunk.uncompressed_size - 1
    csize = chunk.compressed_size - 1
    uoff = chunk.uncompressed_offset
    coff = chunk.compressed_offset
    if not (0 <= usize < _CI_MAX_SIZE and 0 <= csize < _CI_MAX_SIZE):
        raise BuildError(f"chunk {chunk.index} is too big for a blob.meta v1 record")
    if uoff % EROFS_BLOCK_SIZE or uoff >= _CI_MAX_UNCOMPRESSED_OFFSET or coff >= _CI_MAX_COMPRESSED_OFFSET:
        raise BuildError(f"chunk {chunk.index} offsets do not fit a blob.meta v1 record")
    uncomp_info = uoff | ((usize & 0xFFFFF) << 44) | ((usize >> 20) << 8)
    comp_info = coff | ((csize & 0xFFFFF) << 44) | ((csize >> 20) << 40)
    return struct.pack("<QQ", uncomp_info, comp_info)


def pack_blob_meta_header(
    features: int, ci_compressor: int, entries: int, ci_offset: int, ci_compressed: int, ci_uncompressed: int
) -> bytes:
    """Return the 4096-byte ``BlobCompressionContextHeader`` (rafs-format.md §6.2)."""
    hdr = bytearray(BLOB_META_HEADER_SIZE)
    _META_HEADER.pack_into(
        hdr, 0, BLOB_META_MAGIC, features, ci_compressor, entries, ci_offset, ci_compressed,
        ci_uncompressed, 0, 0, 0,
    )
    struct.pack_into("<I", hdr, BLOB_META_HEADER_SIZE - 4, BLOB_META_MAGIC)
    return bytes(hdr)


def pack_toc_entry(
    name: str, flags: int, digest: bytes, compressed_offset: int, compressed_size: int, uncompressed_size: int
) -> bytes:
    """Return one 128-byte ToC entry (rafs-format.md §6.3)."""
    return _TOC_ENTRY.pack(
        flags, 0, name.encode(), digest, compressed_offset, compressed_size, uncompressed_size, bytes(48)
    )


# -- the writer -----------------------------------------------------------------------------------


#: Chunks smaller than this are compressed on the calling thread (when none are queued before them).
INLINE_COMPRESS = 64 << 10


class BlobWriter:
    """Write one data blob to a binary file object, strictly sequentially.

    ``compressor``/``digester`` are the image's chunk algorithms (plugin instances). ``blob_toc``
    adds the chunk digest array, the ToC and tar trailers (upstream ``--features blob-toc``);
    ``inline_meta`` embeds the bootstrap (``--blob-inline-meta``), compressed with
    ``meta_compressor`` when ``blob_toc`` is on (upstream uses zstd; ``None`` stores it raw).
    ``workers > 1`` compresses chunks on that many threads.
    """

    def __init__(
        self,
        out: BinaryIO,
        *,
        compressor: Compressor,
        digester: Digester,
        chunk_size: int,
        blob_index: int = 0,
        blob_toc: bool = False,
        inline_meta: bool = False,
        meta_compressor: Compressor | None = None,
        workers: int = 1,
    ) -> None:
        if compressor.algorithm_id is None or digester.algorithm_id is None:
            raise BuildError(
                f"compressor '{compressor.name}' / digester '{digester.name}' have no upstream on-disk id "
                "and cannot be recorded in a RAFS image"
            )
        self._out = out
        self.compressor = compressor
        self.digester = digester
        self.chunk_size = chunk_size
        self.blob_index = blob_index
        self.blob_toc = blob_toc
        self.inline_meta = inline_meta
        self.meta_compressor = meta_compressor
        self._hash = hashlib.sha256()
        self._gather: list[bytes] = []
        self._gathered = 0
        self._pos = 0
        self._ucursor = 0
        self._chunks: list[ChunkInfo] = []
        self._compress_chunks = compressor.algorithm_id != COMPRESSOR_NONE
        self._pool: ThreadPoolExecutor | None = None
        if workers > 1 and self._compress_chunks:
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nydus-compress")
        self._max_pending = max(2, 3 * workers)
        self._pending: collections.deque[tuple[ChunkInfo, bytes, Future[bytes]]] = collections.deque()
        self._finished = False

    # -- chunk data ---------------------------------------------------------------------------

    @property
    def chunk_count(self) -> int:
        """Number of chunks added so far."""
        return len(self._chunks)

    @property
    def compresses_chunks(self) -> bool:
        """Whether chunks are compressed (stored so when that is smaller); not with compressor none."""
        return self._compress_chunks

    @property
    def uncompressed_size(self) -> int:
        """Size of the uncompressed blob image so far (a multiple of 4096)."""
        return self._ucursor

    @property
    def position(self) -> int:
        """Bytes written to the output so far."""
        return self._pos

    def add_chunk(self, data: bytes, digest: bytes | None = None) -> ChunkInfo:
        """Append one chunk (its uncompressed bytes) and return its record.

        ``digest`` may be given when the caller already computed it (for dedup). The chunk is
        stored compressed when that is strictly smaller, else raw. ``file_offset`` is left 0 for
        the caller to set.
        """
        if self._finished:
            raise RuntimeError("BlobWriter.add_chunk after finish")
        size = len(data)
        if not 0 < size <= self.chunk_size:
            raise BuildError(f"chunk of {size} bytes does not fit chunk size {self.chunk_size:#x}")
        if digest is None:
            digest = self.digester.digest(data)
        info = ChunkInfo(
            block_id=digest, blob_index=self.blob_index, flags=0, compressed_size=size,
            uncompressed_size=size, compressed_offset=0, uncompressed_offset=self._ucursor,
            file_offset=0, index=len(self._chunks),
        )
        self._ucursor = align_up(self._ucursor + size, EROFS_BLOCK_SIZE)
        self._chunks.append(info)
        if not self._compress_chunks:
            self._store(info, data, data)
        elif self._pool is None or (size < INLINE_COMPRESS and not self._pending):
            # a small chunk costs less to compress than to hand to a thread (measured on 100k
            # files of 0-4 KiB: a future per chunk was a quarter of the build)
            self._store(info, data, self.compressor.compress(data))
        else:
            self._pending.append((info, data, self._pool.submit(self.compressor.compress, data)))
            while self._pending and (len(self._pending) > self._max_pending or self._pending[0][2].done()):
                self._drain_one()
        return info

    def add_stored(self, size: int, digest: bytes, stored: bytes, compressed: bool) -> ChunkInfo:
        """Append one chunk already compressed elsewhere (a builder worker process): ``stored`` is
        what goes into the blob -- the compressed frame when ``compressed``, else the ``size`` raw
        bytes, chosen as :meth:`add_chunk` chooses -- so the blob is byte-identical to adding the
        raw chunk here."""
        if self._finished:
            raise RuntimeError("BlobWriter.add_stored after finish")
        if not 0 < size <= self.chunk_size:
            raise BuildError(f"chunk of {size} bytes does not fit chunk size {self.chunk_size:#x}")
        if compressed != (len(stored) < size) or (compressed and not self._compress_chunks):
            raise ValueError("stored chunk does not match its compressed flag")
        while self._pending:  # chunks before this one still being compressed go first
            self._drain_one()
        chunks = self._chunks
        info = ChunkInfo(
            digest, self.blob_index, _COMPRESSED if compressed else 0, len(stored), size,
            self._pos, self._ucursor, 0, len(chunks),
        )
        self._ucursor = (self._ucursor + size + EROFS_BLOCK_SIZE - 1) & -EROFS_BLOCK_SIZE
        chunks.append(info)
        self._write(stored)
        return info

    def add_stored_many(self, items: Sequence[tuple[int, bytes, bytes, bool]]) -> list[ChunkInfo]:
        """:meth:`add_stored` for each ``(size, digest, stored, compressed)`` of ``items`` in order
        (one call per batch of small files: the same records and bytes, less per-chunk overhead)."""
        if self._finished:
            raise RuntimeError("BlobWriter.add_stored after finish")
        while self._pending:  # chunks before these still being compressed go first
            self._drain_one()
        chunks, gather = self._chunks, self._gather
        cs, blob_index, compresses = self.chunk_size, self.blob_index, self._compress_chunks
        pos, ucursor, gathered = self._pos, self._ucursor, self._gathered
        out: list[ChunkInfo] = []
        try:
            for size, digest, stored, compressed in items:
                if not 0 < size <= cs:
                    raise BuildError(f"chunk of {size} bytes does not fit chunk size {cs:#x}")
                n = len(stored)
                if compressed != (n < size) or (compressed and not compresses):
                    raise ValueError("stored chunk does not match its compressed flag")
                info = ChunkInfo(digest, blob_index, _COMPRESSED if compressed else 0, n, size, pos, ucursor,
                                 0, len(chunks))
                ucursor = (ucursor + size + EROFS_BLOCK_SIZE - 1) & -EROFS_BLOCK_SIZE
                chunks.append(info)
                out.append(info)
                gather.append(stored)
                gathered += n
                pos += n
        finally:
            self._pos, self._ucursor, self._gathered = pos, ucursor, gathered
        if gathered >= _GATHER:
            self._write_gathered()
        return out

    def _drain_one(self) -> None:
        info, data, fut = self._pending.popleft()
        self._store(info, data, fut.result())

    def _store(self, info: ChunkInfo, data: bytes, packed: bytes) -> None:
        if len(packed) < len(data):
            info.flags |= _COMPRESSED
            stored = packed
        else:
            stored = data
        info.compressed_offset = self._pos
        info.compressed_size = len(stored)
        self._write(stored)

    def _write(self, data: bytes) -> None:
        # small pieces are gathered and written + hashed together: one call per ~1 MiB, not per chunk
        self._gather.append(data)
        self._gathered += len(data)
        self._pos += len(data)
        if self._gathered >= _GATHER:
            self._write_gathered()

    def _write_gathered(self) -> None:
        if self._gather:
            data = self._gather[0] if len(self._gather) == 1 else b"".join(self._gather)
            self._gather.clear()
            self._gathered = 0
            self._out.write(data)
            self._hash.update(data)

    def _hashed(self) -> hashlib._Hash:
        """The running sha256 of everything written (gathered pieces written first)."""
        self._write_gathered()
        return self._hash

    def flush(self) -> None:
        """Write every chunk still being compressed; afterwards all returned records are complete
        and every byte so far has reached the output file object."""
        while self._pending:
            self._drain_one()
        self._write_gathered()

    # -- trailer sections ---------------------------------------------------------------------

    @property
    def features(self) -> int:
        """``BlobFeatures`` this blob records (blob table and blob-meta header)."""
        f = BlobFeatures.ALIGNED | BlobFeatures.CAP_TAR_TOC
        if self.blob_toc:
            f |= BlobFeatures.HAS_TOC | BlobFeatures.INLINED_CHUNK_DIGEST
        if self.blob_toc or self.inline_meta:
            f |= BlobFeatures.HAS_TAR_HEADER
        if self.inline_meta:
            f |= BlobFeatures.INLINED_FS_META
        return int(f)

    def finish(self, bootstrap: Callable[[BlobInfo], bytes] | None = None) -> BlobInfo:
        """Write the trailer sections and return the blob's table entry (id = sha256 of the file).

        With ``inline_meta``, ``bootstrap`` is called with the blob's provisional entry (id
        ``"x" * 64`` as upstream, sizes up to the bootstrap section, no ToC digest) and must return
        the bootstrap bytes to embed.
        """
        if self._finished:
            raise RuntimeError("BlobWriter.finish called twice")
        if self.inline_meta and bootstrap is None:
            raise ValueError("inline_meta needs the bootstrap callback")
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
        self._finished = True
        features = self.features
        tar = bool(features & BlobFeatures.HAS_TAR_HEADER)
        toc: list[bytes] = []

        data_size = self._pos
        if tar:
            self._write(tar_header(TOC_NAME_BLOB, data_size))
        # image.blob: the blob starts at 0, so the running hash is sha256(data || its tar header).
        toc.append(pack_toc_entry(
            TOC_NAME_BLOB, TOC_FLAG_NONE, self._hashed().copy().digest(), 0, data_size, self._ucursor
        ))

        ci_raw = b"".join(pack_chunk_info_v1(c) for c in self._chunks)
        ci_stored, ci_compressor, ci_flag = ci_raw, COMPRESSOR_NONE, TOC_FLAG_NONE
        if self._compress_chunks and ci_raw:
            packed = self.compressor.compress(ci_raw)
            if len(packed) < len(ci_raw):
                ci_stored = packed
                ci_compressor = recorded_id(self.compressor, "compressor")
                ci_flag = self.compressor.toc_flag or TOC_FLAG_NONE
        ci_offset = self._pos
        header = pack_blob_meta_header(
            features, ci_compressor, len(self._chunks), ci_offset, len(ci_stored), len(ci_raw)
        )
        self._write(ci_stored)
        self._write(header)
        if tar:
            self._write(tar_header(TOC_NAME_BLOB_META, len(ci_stored) + len(header)))
        toc.append(pack_toc_entry(
            TOC_NAME_BLOB_META, ci_flag, hashlib.sha256(ci_raw).digest(), ci_offset, len(ci_stored),
            len(ci_raw),
        ))
        toc.append(pack_toc_entry(
            TOC_NAME_BLOB_META_HEADER, TOC_FLAG_NONE, hashlib.sha256(header).digest(),
            ci_offset + len(ci_stored), len(header), len(header),
        ))

        if self.blob_toc:
            digests = b"".join(c.block_id for c in self._chunks)
            offset = self._pos
            self._write(digests)
            self._write(tar_header(TOC_NAME_BLOB_DIGEST, len(digests)))
            toc.append(pack_toc_entry(
                TOC_NAME_BLOB_DIGEST, TOC_FLAG_NONE, hashlib.sha256(digests).digest(), offset,
                len(digests), len(digests),
            ))

        info = BlobInfo(
            blob_id=BLOB_ID_INLINE_PLACEHOLDER,
            blob_index=self.blob_index,
            chunk_size=self.chunk_size,
            chunk_count=len(self._chunks),
            compressor=recorded_id(self.compressor, "compressor"),
            digester=recorded_id(self.digester, "digester"),
            features=features,
            compressed_size=self._pos,
            uncompressed_size=self._ucursor,
            blob_toc_size=self._toc_size(len(toc)),
            ci_compressor=ci_compressor,
            ci_offset=ci_offset,
            ci_compressed_size=len(ci_stored),
            ci_uncompressed_size=len(ci_raw),
        )

        if self.inline_meta:
            assert bootstrap is not None
            boot = bootstrap(info)
            stored, flag = boot, TOC_FLAG_NONE
            if self.blob_toc and self.meta_compressor is not None:
                stored = self.meta_compressor.compress(boot)
                flag = self.meta_compressor.toc_flag or TOC_FLAG_NONE
            offset = self._pos
            self._write(stored)
            self._write(tar_header(TOC_NAME_BOOTSTRAP, len(stored)))
            toc.append(pack_toc_entry(
                TOC_NAME_BOOTSTRAP, flag, hashlib.sha256(boot).digest(), offset, len(stored), len(boot)
            ))

        if self.blob_toc:
            entries = b"".join(toc)
            trailer = tar_header(TOC_NAME_TOC, len(entries))
            self._write(entries)
            self._write(trailer)
            info.blob_toc_size = len(entries) + len(trailer)
            info.blob_toc_digest = hashlib.sha256(entries + trailer).digest()

        info.compressed_size = self._pos
        info.blob_id = self._hashed().hexdigest()
        return info

    def _toc_size(self, entries_so_far: int) -> int:
        """Size of the ToC (entries + tar header) this blob will end with, 0 without ToC."""
        if not self.blob_toc:
            return 0
        return (entries_so_far + (1 if self.inline_meta else 0)) * 128 + TAR_BLOCK

    def abort(self) -> None:
        """Stop the compression workers without writing anything more (after an error)."""
        self._finished = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
