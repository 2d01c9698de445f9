"""nydus-snapshotter-containerd: a containerd proxy snapshotter serving Nydus images lazily."""

__version__ = "0.1.0"
