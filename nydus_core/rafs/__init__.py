"""RAFS on-disk format: v5 read, v6 read and write, blob meta, ToC, tree model."""
