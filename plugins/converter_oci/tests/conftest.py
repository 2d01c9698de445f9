"""Registry server fixtures, from the registry plugin's installed helper module."""

from nydus_testsupport.registry import (  # noqa: F401
    registry_basic,
    registry_factory,
    registry_open,
)
