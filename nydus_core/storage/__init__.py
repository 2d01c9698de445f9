"""The read pipeline: chunk lookup, cache, merged and deduplicated backend fetches, verification.

Public: :class:`ReadPipeline` (and :class:`FileChunks`, what its ``file(ino)`` returns), the fetch
priorities, :class:`AccessPattern`, :func:`resolve_blob_ids`; prefetching lives in :mod:`.prefetch`,
counters in :mod:`.stats`. The pipeline's collaborators (``file_index``, ``chunk_walk``,
``inflight``, ``read_ahead``, ``chunk_order``, ``dispatch``, ``fetcher``, ``decode``,
``blob_state``, ``fetch_group``) are internal: see docs/core-api.md.
"""

from .access_pattern import AccessPattern
from .blobids import resolve_blob_ids
from .file_index import FileChunks
from .pipeline import ReadPipeline
from .pool import ON_DEMAND, PREFETCH, FetchPool

__all__ = ["ON_DEMAND", "PREFETCH", "AccessPattern", "FetchPool", "FileChunks", "ReadPipeline",
           "resolve_blob_ids"]
