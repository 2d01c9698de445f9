"""Byte counts as people write and read them: ``4096``, ``512M``, ``10GiB``, ``1.5 MiB``.

Units are binary (``k`` = 1024) whether or not an ``i`` is written, as in upstream's configs and
``du -h``; case and blanks do not matter. Used by ``nydus cache gc --max-size`` and the blob
cache's ``max_size``, and for the sizes the tools print.
"""

from __future__ import annotations

import re

__all__ = ["format_size", "parse_size"]

_SIZE = re.compile(r"\s*(\d+)\s*([kmgtp]?)(i?b?)\s*", re.IGNORECASE)
_SHIFTS = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}
_UNITS = ("B", "K", "M", "G", "T")


def parse_size(value: int | str) -> int:
    """Return the bytes of ``value``: a non-negative int, or a string like ``"1g"`` or ``"10MiB"``.

    Raises ValueError with a one-line message (callers add the option or key it came from)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size in bytes, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size must not be negative, got {value}")
        return value
    m = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected a size like 1073741824 or 1G, got {value!r}")
    return int(m.group(1)) << _SHIFTS[m.group(2).lower()]


def format_size(n: float, *, long: bool = False) -> str:
    """Return ``n`` bytes with a binary unit: ``1.5M`` (``1.5 MiB`` with ``long``), whole bytes as
    ``12B`` (``12 B``)."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{n:.0f} B" if long else f"{n:.0f}B"
            return f"{n:.1f} {unit}iB" if long else f"{n:.1f}{unit}"
        n /= 1024
    raise AssertionError("unreachable")
