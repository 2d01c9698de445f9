"""Example nydus-py plugin: a read-only backend serving blobs from an HTTP directory."""

from .backend import HttpDirBackend

__all__ = ["HttpDirBackend"]
