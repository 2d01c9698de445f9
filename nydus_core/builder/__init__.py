"""nydus_core.builder."""
