"""Fixtures: the test registry (from the registry plugin's helpers) and a private containerd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nydus_backend_registry.testing import registry_open  # noqa: F401
from nydus_snapshotter_containerd.testing import ContainerdEnv, containerd_unavailable


@pytest.fixture
def need_containerd() -> None:
    """Skip when containerd/runc/FUSE or root are missing here."""
    reason = containerd_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def containerd_env(tmp_path_factory: pytest.TempPathFactory, registry_open) -> Iterator[ContainerdEnv]:  # noqa: F811
    """A snapshotter and a private containerd for the module, trusting the test registry over HTTP."""
    reason = containerd_unavailable()
    if reason:
        pytest.skip(reason)
    env = ContainerdEnv(tmp_path_factory.mktemp("containerd"), plain_http=[registry_open.server.host])
    env.start()
    yield env
    env.stop()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small runnable root filesystem built from this host's binaries."""
    from nydus_snapshotter_containerd.testing import host_rootfs

    return host_rootfs(tmp_path_factory.mktemp("rootfs") / "base")
