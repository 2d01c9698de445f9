"""The ``files`` prefetcher: an explicit list of paths (nydusd ``--prefetch-files``)."""

from .prefetcher import FilesPrefetcher, read_list

__all__ = ["FilesPrefetcher", "read_list"]
