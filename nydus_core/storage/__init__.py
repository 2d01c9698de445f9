"""The read pipeline: chunk lookup, cache, merged and deduplicated backend fetches, verification.

Import :class:`ReadPipeline` from here; prefetching lives in :mod:`.prefetch`, the access-pattern
recorder in :mod:`.access_pattern`, counters in :mod:`.stats`.
"""

from .access_pattern import AccessPattern
from .blobids import resolve_blob_ids
from .pipeline import BlobState, ReadPipeline
from .pool import ON_DEMAND, PREFETCH, FetchPool

__all__ = ["ON_DEMAND", "PREFETCH", "AccessPattern", "BlobState", "FetchPool", "ReadPipeline",
           "resolve_blob_ids"]
