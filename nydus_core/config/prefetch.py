"""Prefetch sections: v1 ``fs_prefetch`` and v2 ``[rafs.prefetch]``/``[cache.prefetch]``.

The model has one effective :class:`PrefetchConfig`. v1 has one section, so it is that section. For
v2 (upstream copies ``fs_prefetch`` into ``cache.prefetch`` when the latter is disabled, so the
cache-level settings drive the prefetch workers and the RAFS-level ones choose what to fetch):

- ``enable``: either table enabled;
- ``threads_count``, ``merging_size`` (``batch_size``), ``bandwidth_rate`` (``bandwidth_limit``):
  from ``[cache.prefetch]`` when it is enabled, else from ``[rafs.prefetch]``;
- ``prefetch_all``, ``stream_prefetch``: from ``[cache.prefetch]`` when only it is enabled, else
  from ``[rafs.prefetch]``.

A disabled prefetch is always the canonical ``PrefetchConfig()``, whatever else its table says.
"""

from __future__ import annotations

from typing import NamedTuple

from .fields import U32_MAX, Section
from .model import (
    DEFAULT_MERGING_SIZE,
    DEFAULT_PREFETCH_THREADS,
    MAX_MERGING_SIZE,
    MAX_PREFETCH_THREADS,
    PrefetchConfig,
)


class PrefetchNames(NamedTuple):
    """The spelling of the prefetch keys in one config format."""

    threads: str
    merging: str
    bandwidth: str
    prefetch_all_default: bool


V1_NAMES = PrefetchNames("threads_count", "merging_size", "bandwidth_rate", True)
# Upstream's v2 PrefetchConfigV2 defaults prefetch_all to false (v1's FsPrefetchControl: true).
V2_NAMES = PrefetchNames("threads", "batch_size", "bandwidth_limit", False)


def read_prefetch(section: Section, names: PrefetchNames) -> PrefetchConfig:
    """Read one prefetch table. Ranges of threads and merge size are checked only when enabled,
    as upstream does (a disabled section may hold anything of the right type). A disabled section
    gives the canonical ``PrefetchConfig()``: disabled prefetch is the same whatever else it says."""
    enable = section.bool("enable", False)
    threads = section.int(names.threads, DEFAULT_PREFETCH_THREADS)
    merging = section.int(names.merging, DEFAULT_MERGING_SIZE)
    bandwidth = section.int(names.bandwidth, 0, maximum=U32_MAX)
    prefetch_all = section.bool("prefetch_all", names.prefetch_all_default)
    stream = section.bool("stream_prefetch", False)
    if enable:
        section.check_range(names.threads, threads, 1, MAX_PREFETCH_THREADS)
        section.check_range(names.merging, merging, 0, MAX_MERGING_SIZE, hex_bounds=True)
    section.finish()
    if not enable:
        return PrefetchConfig()
    return PrefetchConfig(
        enable=enable,
        threads_count=threads,
        merging_size=merging,
        bandwidth_rate=bandwidth,
        prefetch_all=prefetch_all,
        stream_prefetch=stream,
    )


def merge_v2(rafs: PrefetchConfig, cache: PrefetchConfig) -> PrefetchConfig:
    """Merge v2's RAFS-level and cache-level prefetch tables into the one effective setting."""
    if not (rafs.enable or cache.enable):
        return PrefetchConfig()
    workers = cache if cache.enable else rafs
    what = cache if cache.enable and not rafs.enable else rafs
    return PrefetchConfig(
        enable=rafs.enable or cache.enable,
        threads_count=workers.threads_count,
        merging_size=workers.merging_size,
        bandwidth_rate=workers.bandwidth_rate,
        prefetch_all=what.prefetch_all,
        stream_prefetch=what.stream_prefetch,
    )
