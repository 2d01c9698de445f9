"""nydus-testkit: what a nydus-py plugin's tests reuse.

- contract suites every implementation of an interface passes (:mod:`.contracts`,
  :mod:`.cache_contract`) and a suite checking an installed plugin's entry point
  (:mod:`.entry_points`);
- small real implementations and sample data (:mod:`.fakes`, :mod:`.samples`, :mod:`.fake_image`);
- running the ``nydus`` command (:mod:`.cli`), servers on 127.0.0.1 (:mod:`.servers`) and a ranged
  HTTP file server for backends that read over HTTP (:mod:`.rangeserver`).

The names below are importable from the package itself (``from nydus_testkit import
BackendContract``); they are imported on first use, so importing the package alone imports neither
pytest nor the core's storage code.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

if "pytest" in sys.modules:  # let pytest rewrite the suites' asserts into readable failures
    sys.modules["pytest"].register_assert_rewrite(
        f"{__name__}.contracts", f"{__name__}.cache_contract", f"{__name__}.entry_points"
    )

_LAZY = {
    "BackendContract": "contracts",
    "CacheContract": "contracts",
    "CompressorContract": "contracts",
    "DigesterContract": "contracts",
    "PipelineCacheContract": "cache_contract",
    "EntryPointSuite": "entry_points",
    "DirBackend": "fakes",
    "DirectoryChunkCache": "fakes",
    "MemoryBackend": "fakes",
    "RecordingBackend": "fakes",
    "RangeHTTPServer": "rangeserver",
    "SampleBlob": "samples",
    "make_sample_blob": "samples",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import the public names on first use (see the module docstring)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
