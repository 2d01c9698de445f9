"""CRC32C (Castagnoli), used by chunks flagged HAS_CRC32 (rafs-format.md §2.4, §3).

Uses the ``crc32c`` package when it is installed (hardware accelerated); otherwise a table-driven
pure-Python fallback, which is slow (about 1 s per MiB) but only needed for images made by very
recent upstream builders with CRC32 enabled.
"""

from __future__ import annotations

_POLY = 0x82F63B78  # reflected Castagnoli polynomial


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c_pure(data: bytes, crc: int = 0) -> int:
    """Return the CRC32C of ``data`` (continuing from ``crc``), computed in pure Python."""
    c = crc ^ 0xFFFFFFFF
    table = _TABLE
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


try:  # pragma: no cover - depends on the environment
    from crc32c import crc32c as _fast

    def crc32c(data: bytes, crc: int = 0) -> int:
        """Return the CRC32C of ``data`` (continuing from ``crc``)."""
        value: int = _fast(data, crc)
        return value

except ImportError:
    crc32c = crc32c_pure
