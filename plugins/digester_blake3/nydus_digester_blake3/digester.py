"""The blake3 digester (BLAKE3-256)."""

from __future__ import annotations

from blake3 import blake3

from nydus_core.interfaces import Digester, HashObject


class Blake3Digester(Digester):
    """BLAKE3 with 32-byte output, as upstream's default chunk digest."""

    name = "blake3"
    algorithm_id = 0
    super_flag = 0x4

    def new(self) -> HashObject:
        """Return a fresh BLAKE3 hasher."""
        return blake3()

    def digest(self, data: bytes) -> bytes:
        """Return the BLAKE3-256 of ``data``."""
        return blake3(data).digest()
