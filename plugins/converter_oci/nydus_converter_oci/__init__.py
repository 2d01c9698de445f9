"""nydusify for nydus-py: OCI image -> Nydus image conversion, check and mount (a converter plugin)."""
