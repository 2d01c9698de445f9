"""Registry server fixtures, from the installed helper module (shared with converter/snapshotter tests)."""

from nydus_backend_registry.testing import (  # noqa: F401
    registry_basic,
    registry_factory,
    registry_open,
    registry_token,
)
