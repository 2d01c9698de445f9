"""What the format itself needs: uncompressed chunks and sha256, registered like any plugin."""

from __future__ import annotations

import hashlib

from .errors import IntegrityError
from .hookspecs import hookimpl
from .interfaces import Compressor, Digester, HashObject


class NoneCompressor(Compressor):
    """Chunks stored as they are (upstream ``none``)."""

    name = "none"
    algorithm_id = 0
    super_flag = 0x1
    toc_flag = 0x1

    def compress(self, data: bytes) -> bytes:
        """Return ``data`` unchanged."""
        return bytes(data)

    def decompress(self, data: bytes, uncompressed_size: int) -> bytes:
        """Return ``data`` after checking its size."""
        if len(data) != uncompressed_size:
            raise IntegrityError(f"uncompressed chunk is {len(data)} bytes, expected {uncompressed_size}")
        return bytes(data)


class Sha256Digester(Digester):
    """SHA-256 (upstream ``sha256``); OCI digests and blob ids are sha256 too."""

    name = "sha256"
    algorithm_id = 1
    super_flag = 0x8

    def new(self) -> HashObject:
        """Return a fresh ``hashlib.sha256`` object."""
        return hashlib.sha256()

    def digest(self, data: bytes) -> bytes:
        """Return the SHA-256 of ``data``."""
        return hashlib.sha256(data).digest()


@hookimpl
def nydus_register_compressors() -> list[type[Compressor]]:
    """Register the intrinsic ``none`` compressor."""
    return [NoneCompressor]


@hookimpl
def nydus_register_digesters() -> list[type[Digester]]:
    """Register the intrinsic ``sha256`` digester."""
    return [Sha256Digester]
