"""nydus_core.testing."""
