"""ZRAN (OCI-ref / ``targz-ref``) blob meta: inflate contexts, their dictionaries, chunk locations.

A ZRAN blob's chunks live inside the original gzip layer. Its blob.meta CI data is the chunk-info v2
array, then a table of 40-byte :class:`ZranContext` records (checkpoints where inflation of the
layer can restart), then their dictionaries back to back (rafs-format.md §6.8). A chunk's v2
``data`` word is ``(context index << 32) | offset of the chunk in that context's output``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import FormatError
from ..interfaces import ResumePoint

__all__ = ["ZRAN_CONTEXT_SIZE", "ZranContext", "ZranTable", "pack_zran_area", "parse_zran_area"]

_CTX = struct.Struct("<QQQIIIBBH")
ZRAN_CONTEXT_SIZE = _CTX.size
assert ZRAN_CONTEXT_SIZE == 40
#: nydusd refuses contexts producing more than this.
MAX_CONTEXT_OUTPUT = 16 << 20
MAX_DICT_SIZE = 32768


@dataclass(frozen=True, slots=True)
class ZranContext:
    """``ZranInflateContext``: a checkpoint of the gzip stream and the span it covers."""

    in_offset: int
    out_offset: int
    dict_offset: int
    in_len: int
    out_len: int
    dict_size: int
    ctx_byte: int
    ctx_bits: int

    def pack(self) -> bytes:
        """Return the 40-byte on-disk record."""
        return _CTX.pack(self.in_offset, self.out_offset, self.dict_offset, self.in_len, self.out_len,
                         self.dict_size, self.ctx_byte, self.ctx_bits, 0)


@dataclass(frozen=True, slots=True)
class ZranTable:
    """The contexts and dictionaries of one ZRAN blob."""

    contexts: Sequence[ZranContext]
    dictionaries: bytes

    def window(self, index: int) -> bytes:
        """Return the dictionary of context ``index``."""
        c = self.contexts[index]
        return self.dictionaries[c.dict_offset:c.dict_offset + c.dict_size]

    def resume_point(self, index: int) -> ResumePoint:
        """Return context ``index`` as a resume point for :meth:`Compressor.decompress_from`."""
        c = self.contexts[index]
        return ResumePoint(c.in_offset, c.out_offset, c.ctx_bits, c.ctx_byte, self.window(index))


def parse_zran_area(area: bytes, count: int, *, where: str = "blob.meta") -> ZranTable:
    """Decode the context table (``count`` records) and dictionary area that make up ``area``."""
    table = count * ZRAN_CONTEXT_SIZE
    if table > len(area):
        raise FormatError(f"{where}: {count} zran contexts do not fit in {len(area)} bytes")
    dictionaries = bytes(area[table:])
    contexts: list[ZranContext] = []
    for i, fields in enumerate(_CTX.iter_unpack(area[:table])):
        ctx = ZranContext(*fields[:8])
        if (ctx.ctx_bits > 7 or ctx.dict_size > MAX_DICT_SIZE
                or ctx.dict_offset + ctx.dict_size > len(dictionaries)):
            raise FormatError(f"{where}: zran context {i} is invalid (bits {ctx.ctx_bits}, dictionary "
                              f"{ctx.dict_offset}+{ctx.dict_size} of {len(dictionaries)} bytes)")
        if ctx.out_len > MAX_CONTEXT_OUTPUT:
            raise FormatError(f"{where}: zran context {i} produces {ctx.out_len} bytes (limit 16 MiB)")
        contexts.append(ctx)
    return ZranTable(contexts, dictionaries)


def pack_zran_area(contexts: Sequence[ZranContext], dictionaries: Sequence[bytes]) -> bytes:
    """Return the context table followed by the dictionaries (each context's ``dict_offset`` must
    already point at its dictionary's place)."""
    return b"".join(c.pack() for c in contexts) + b"".join(dictionaries)
