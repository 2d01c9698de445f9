"""nydus_core.storage."""
