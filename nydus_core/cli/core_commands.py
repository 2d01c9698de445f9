"""Core commands of the ``nydus`` group beyond ``plugins``: importing the modules registers them."""

from . import storage_commands  # noqa: F401 - nydus ls, cat, cache
