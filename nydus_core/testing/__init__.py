"""Test helpers that plugins reuse: contract suites, fakes, sample data, CLI and venv helpers.

The contract suites (``from nydus_core.testing import BackendContract``) need pytest; they are
imported on first use so that importing this package does not.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

if "pytest" in sys.modules:  # let pytest rewrite the contracts' asserts into readable failures
    sys.modules["pytest"].register_assert_rewrite(
        f"{__name__}.contracts", f"{__name__}.objstore_suites", f"{__name__}.entry_points"
    )

_LAZY = {
    "BackendContract": "contracts",
    "CacheContract": "contracts",
    "CompressorContract": "contracts",
    "DigesterContract": "contracts",
    "MemoryBackend": "fakes",
    "DirectoryChunkCache": "fakes",
    "SampleBlob": "samples",
    "make_sample_blob": "samples",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
