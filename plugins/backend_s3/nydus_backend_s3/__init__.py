"""The ``s3`` storage backend for nydus-py (boto3 is imported on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["S3Backend"]

if TYPE_CHECKING:  # what __getattr__ returns, for type checkers
    from .backend import S3Backend


def __getattr__(name: str) -> object:
    if name == "S3Backend":
        from .backend import S3Backend

        return S3Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
