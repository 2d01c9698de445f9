"""Fixtures for the FUSE daemon tests: skip only when FUSE itself is unavailable."""

from __future__ import annotations

import pytest
from nydus_testsupport.fuse import fuse_unavailable


@pytest.fixture
def need_fuse() -> None:
    """Skip the test when /dev/fuse (or root) is missing."""
    reason = fuse_unavailable()
    if reason:
        pytest.skip(reason)
