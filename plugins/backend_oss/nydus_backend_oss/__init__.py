"""The ``oss`` (Alibaba Cloud Object Storage Service) storage backend for nydus-py (oss2 is imported on
first use)."""

from __future__ import annotations

from typing import Any

__all__ = ["OSSBackend"]


def __getattr__(name: str) -> Any:
    if name == "OSSBackend":
        from .backend import OSSBackend

        return OSSBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
