"""Deterministic sample data for tests: payloads, blob ids, and a blob with its chunk records.

:func:`make_sample_blob` lays chunks out as a RAFS v6 builder does (uncompressed offsets 4 KiB
aligned, compressed chunks back to back), so cache and pipeline tests get realistic
:class:`~nydus_core.rafs.model.BlobInfo` / :class:`~nydus_core.rafs.model.ChunkInfo` records.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from nydus_core.builtins import NoneCompressor, Sha256Digester
from nydus_core.interfaces import Compressor, Digester
from nydus_core.rafs.constants import BlobFeatures, ChunkFlags
from nydus_core.rafs.model import BlobInfo, ChunkInfo

__all__ = ["SampleBlob", "blob_id_of", "make_sample_blob", "payload", "random_bytes"]

ALIGN = 4096


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Return ``size`` pseudo-random (incompressible) bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


def payload(size: int, seed: int = 0) -> bytes:
    """Return ``size`` bytes that compress moderately: runs of text, zeros and random spans."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rng.randrange(3)
        n = rng.randrange(1, 8192)
        if kind == 0:
            out += (b"nydus chunk %d " % rng.randrange(1000)) * (n // 16 + 1)
        elif kind == 1:
            out += bytes(n)
        else:
            out += rng.randbytes(n)
    return bytes(out[:size])


def blob_id_of(data: bytes) -> str:
    """Return the blob id of ``data``: its sha256 as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class SampleBlob:
    """A blob as a builder would write it: stored bytes, chunk records and uncompressed chunk data."""

    blob: BlobInfo
    chunks: list[ChunkInfo]
    chunk_data: list[bytes]
    data: bytes

    @property
    def blob_id(self) -> str:
        """The blob id (sha256 of :attr:`data`)."""
        return self.blob.blob_id


def make_sample_blob(
    chunk_sizes: Sequence[int] = (65536, 4096, 1, 100_000, 65536),
    *,
    seed: int = 0,
    chunk_size: int = 0x100000,
    compressor: Compressor | None = None,
    digester: Digester | None = None,
    blob_index: int = 0,
) -> SampleBlob:
    """Return a blob whose chunks have the given uncompressed sizes (each at most ``chunk_size``).

    Chunks are compressed with ``compressor`` (default ``none``; a chunk that does not shrink is
    stored raw with COMPRESSED clear, as upstream does) and digested with ``digester`` (default
    sha256). The blob id is the sha256 of the stored bytes.
    """
    compressor = compressor or NoneCompressor()
    digester = digester or Sha256Digester()
    chunks: list[ChunkInfo] = []
    chunk_data: list[bytes] = []
    stored = bytearray()
    uoffset = 0
    for index, size in enumerate(chunk_sizes):
        if not 0 < size <= chunk_size:
            raise ValueError(f"chunk size {size} not in 1..{chunk_size}")
        raw = payload(size, seed=seed * 1_000_003 + index)
        packed = compressor.compress(raw)
        flags = 0
        if compressor.name != "none" and len(packed) < len(raw):
            flags |= ChunkFlags.COMPRESSED
        else:
            packed = raw
        chunks.append(ChunkInfo(
            block_id=digester.digest(raw), blob_index=blob_index, flags=int(flags),
            compressed_size=len(packed), uncompressed_size=size, compressed_offset=len(stored),
            uncompressed_offset=uoffset, file_offset=0, index=index,
        ))
        chunk_data.append(raw)
        stored += packed
        uoffset += (size + ALIGN - 1) // ALIGN * ALIGN
    data = bytes(stored)
    blob = BlobInfo(
        blob_id=blob_id_of(data), blob_index=blob_index, chunk_size=chunk_size,
        chunk_count=len(chunks), compressor=compressor.algorithm_id or 0,
        digester=digester.algorithm_id or 0, features=int(BlobFeatures.ALIGNED),
        compressed_size=len(data), uncompressed_size=uoffset,
    )
    return SampleBlob(blob=blob, chunks=chunks, chunk_data=chunk_data, data=data)
