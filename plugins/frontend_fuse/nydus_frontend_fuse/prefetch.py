"""Which prefetcher plugins an instance runs, chosen from its config as upstream nydusd does.

With ``fs_prefetch.enable``: the files named by ``--prefetch-files`` (prefetcher ``files``) or,
without that list, the image's own prefetch table (``table``); then, with ``prefetch_all``, the
rest of the image (``all``). Plugins are resolved by :func:`plan_prefetch` before anything is
mounted, so a missing prefetch plugin is an error at start, with the install hint.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nydus_core.config import NydusConfig
from nydus_core.plugins import registry

if TYPE_CHECKING:
    from .instance import RafsInstance

log = logging.getLogger("nydusd")


def plan_prefetch(config: NydusConfig, prefetch_files: Sequence[str]) -> list[tuple[type[Any], list[str]]]:
    """Return ``(prefetcher class, hints)`` pairs to start, in order (empty when prefetch is off)."""
    pf = config.fs_prefetch
    if not pf.enable:
        if prefetch_files:
            log.warning("--prefetch-files given but fs_prefetch.enable is false in %s: not prefetching",
                        config.source)
        return []
    reg = registry("prefetcher")
    where = f"fs_prefetch in {config.source}"
    plan: list[tuple[type[Any], list[str]]] = []
    if prefetch_files:
        plan.append((reg.get("files", where=where), list(prefetch_files)))
    else:
        plan.append((reg.get("table", where=where), []))
    if pf.prefetch_all:
        plan.append((reg.get("all", where=where), []))
    return plan


def start_prefetchers(inst: RafsInstance) -> list[Any]:
    """Start the planned prefetchers of ``inst`` in the background; return them (for stop())."""
    options = dataclasses.asdict(inst.config.fs_prefetch)
    started = []
    for cls, hints in inst.prefetch_plan:
        p = cls(options)
        p.start(inst.image, inst.pipeline, hints)
        started.append(p)
    return started
