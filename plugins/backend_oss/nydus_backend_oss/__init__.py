"""The ``oss`` (Alibaba Cloud Object Storage Service) storage backend for nydus-py (oss2 is imported on
first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["OSSBackend"]

if TYPE_CHECKING:  # what __getattr__ returns, for type checkers
    from .backend import OSSBackend


def __getattr__(name: str) -> object:
    if name == "OSSBackend":
        from .backend import OSSBackend

        return OSSBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
