"""The ``table`` prefetcher: the files and directories the image's prefetch table lists."""

from .prefetcher import TablePrefetcher

__all__ = ["TablePrefetcher"]
