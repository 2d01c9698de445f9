"""Core commands of the ``nydus`` group beyond ``plugins`` (filled in by later work)."""

from . import storage_commands  # noqa: F401 - nydus ls, cat, cache
