"""OCI packaging of Nydus images: media types, annotations, manifest/index/config building."""
