"""The localfs storage backend for nydus-py: blobs as files in local directories."""

from .backend import LocalFsBackend

__all__ = ["LocalFsBackend"]
