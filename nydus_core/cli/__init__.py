"""Command-line entry points: the ``nydus`` group and ``nydus-image``. Only this package sees everything."""
