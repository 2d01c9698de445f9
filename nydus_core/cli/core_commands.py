"""Core commands of the ``nydus`` group beyond ``plugins`` (filled in by later work)."""
