"""The image builder: ``build`` (``nydus-image create``) and ``merge`` (``nydus-image merge``).

Sources: a directory (``dir-rafs``/``directory``) or a tar stream (``tar-rafs``/``targz-rafs``).
Output: a RAFS v6 bootstrap and a data blob (rafs-format.md §5, §6).
"""

from .build import build
from .merge import merge
from .options import (
    SOURCE_TYPES,
    WHITEOUT_SPECS,
    BuildOptions,
    BuildResult,
    BuildStats,
    MergeResult,
)

__all__ = [
    "SOURCE_TYPES",
    "WHITEOUT_SPECS",
    "BuildOptions",
    "BuildResult",
    "BuildStats",
    "MergeResult",
    "build",
    "merge",
]
