"""Config tests run against the small real plugins of ``nydus_testsupport.config_fakes``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nydus_testsupport.config_fakes import installed_config_fakes

from nydus_core.plugins import PluginManager


@pytest.fixture(autouse=True)
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginManager]:
    """Install the fake backend/cache plugins and clear IMAGE_PULL_AUTH for every test."""
    monkeypatch.delenv("IMAGE_PULL_AUTH", raising=False)
    with installed_config_fakes() as manager:
        yield manager
