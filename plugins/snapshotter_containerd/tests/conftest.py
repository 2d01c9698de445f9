"""Fixtures: the test registry (from the registry plugin's helpers), a fault/counting proxy in front of
it, and a private containerd using our snapshotter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nydus_testsupport.containerd import ContainerdEnv, Lab, containerd_unavailable, host_rootfs
from nydus_testsupport.registry import FaultProxy, RegistryFlavour, registry_basic, registry_open  # noqa: F401


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, registry_open: RegistryFlavour) -> Iterator[Lab]:  # noqa: F811
    """One containerd + snapshotter per test module."""
    reason = containerd_unavailable()
    if reason:
        pytest.skip(reason)
    proxy = FaultProxy(registry_open.server.url).start()
    env = ContainerdEnv(tmp_path_factory.mktemp("containerd"),
                        plain_http=[registry_open.server.host, proxy.host])
    try:
        env.start()
        yield Lab(registry_open, proxy, env)
    finally:
        env.stop()
        proxy.stop()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small runnable root filesystem built from this host's binaries."""
    return host_rootfs(tmp_path_factory.mktemp("rootfs") / "base")
