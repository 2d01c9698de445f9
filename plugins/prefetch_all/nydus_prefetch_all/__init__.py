"""The ``all`` prefetcher: the whole image, in the background.

The implementation is imported on first use: loading the plugin (every command does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["AllPrefetcher"]

if TYPE_CHECKING:  # what __getattr__ returns, for type checkers
    from .prefetcher import AllPrefetcher


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import prefetcher

        return getattr(prefetcher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
