"""RAFS on-disk format: v5 read, v6 read and write, blob meta, ToC, tree model."""

__all__: list[str] = []  # the public names are in the submodules (docs/core-api.md)
