"""nydus_core.oci."""
