"""Registry server fixtures, from the registry plugin's installed helper module."""

from nydus_backend_registry.testing import (  # noqa: F401
    registry_basic,
    registry_factory,
    registry_open,
)
