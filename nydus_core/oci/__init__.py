"""OCI packaging of Nydus images: media types, annotations, manifest/index/config building."""

__all__: list[str] = []  # the public names are in the submodules (docs/core-api.md)
