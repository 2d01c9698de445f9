"""BLAKE3 chunk digests for nydus-py."""

from .digester import Blake3Digester

__all__ = ["Blake3Digester"]
