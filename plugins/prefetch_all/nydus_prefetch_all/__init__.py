"""The ``all`` prefetcher: the whole image, in the background."""

from .prefetcher import AllPrefetcher

__all__ = ["AllPrefetcher"]
