"""The ``blobcache`` (alias ``filecache``) cache policy for nydus-py."""

from .policy import BlobCachePolicy

__all__ = ["BlobCachePolicy"]
