"""blobcache passes the cache contract (basic and pipeline-level)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from nydus_cache_blobcache import BlobCachePolicy
from nydus_testkit.cache_contract import PipelineCacheContract

from nydus_core.interfaces import CachePolicy


class TestBlobCacheContract(PipelineCacheContract):
    @pytest.fixture
    def cache_policy(self) -> Callable[[Path], CachePolicy]:
        return lambda work_dir: BlobCachePolicy({"work_dir": str(work_dir)})


class TestBlobCacheContractValidating(PipelineCacheContract):
    @pytest.fixture
    def cache_policy(self) -> Callable[[Path], CachePolicy]:
        return lambda work_dir: BlobCachePolicy({"work_dir": str(work_dir)}, validate=True)


class TestBlobCacheContractCapped(PipelineCacheContract):
    """With a cap far above the workload, behaviour is unchanged."""

    @pytest.fixture
    def cache_policy(self) -> Callable[[Path], CachePolicy]:
        return lambda work_dir: BlobCachePolicy({"work_dir": str(work_dir), "max_size": "1G"})
