"""The ``blobcache`` (alias ``filecache``) cache policy for nydus-py.

The implementation is imported on first use: loading the plugin (every command does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["BlobCachePolicy"]

if TYPE_CHECKING:  # what __getattr__ returns, for type checkers
    from .policy import BlobCachePolicy


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import policy

        return getattr(policy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
