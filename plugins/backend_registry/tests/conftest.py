"""Registry server fixtures, from the installed helper module (shared with converter/snapshotter tests)."""

from nydus_testsupport.registry import (  # noqa: F401
    registry_basic,
    registry_factory,
    registry_open,
    registry_token,
)
