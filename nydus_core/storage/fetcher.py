"""Fetching one group: the ranged backend request, then decode, hand out, cache, release.

:meth:`GroupFetcher.run` reads the group's byte range from the backend (counted in the backend
metrics; a backend bug becomes a one-line :class:`~nydus_core.errors.BackendError`), decodes and
verifies each chunk (:func:`~.decode.decode_group`), hands the bytes to the waiting readers, writes
the good chunks to the blob's cache (which marks them ready only once durable) and forgets the
group's chunks from the in-flight table. Internal to the pipeline.
"""

from __future__ import annotations

import time
from concurrent.futures import Future

from ..errors import BackendError, NydusError, plugin_errors
from ..interfaces import Backend
from ..rafs.model import ChunkInfo
from .decode import decode_group, decode_zran_group
from .fetch_group import FetchGroup
from .inflight import InFlight
from .pool import ON_DEMAND
from .stats import PipelineMetrics

__all__ = ["GroupFetcher"]


class GroupFetcher:
    """Runs fetch groups against ``backend`` (on a pool worker, or inline on a reader's thread)."""

    def __init__(self, backend: Backend, metrics: PipelineMetrics, inflight: InFlight, *,
                 digest_validate: bool) -> None:
        self._backend = backend
        self._metrics = metrics
        self._inflight = inflight
        self._validate = digest_validate

    def run(self, group: FetchGroup) -> int:
        """Fetch, decode, verify, hand out and cache one group; return the bytes fetched."""
        blob = group.blob
        start, end = group.start, group.end
        prefetch = group.priority != ON_DEMAND
        backend_metrics = self._metrics.backend
        t0 = time.perf_counter()
        zran = None
        held: dict[int, bytes] = {}
        try:
            if blob.is_zran:  # whole inflate contexts, those the blob's context cache lacks
                zran = blob.zran(self._backend)
                start, end, held = zran.fetch_span(group.chunks, blob.zran_contexts)
            if zran is not None and end == start:
                raw = b""
            else:
                with plugin_errors(BackendError, f"backend '{backend_metrics.backend_type}' failed "
                                   f"reading blob {blob.blob_id} at {start}+{end - start}"):
                    raw = self._backend.read(blob.blob_id, start, end - start)
        except BaseException as exc:
            backend_metrics.record(0, time.perf_counter() - t0, error=True, prefetch=prefetch)
            group.fail_pending(exc)
            self._inflight.release(group)
            return 0
        elapsed = time.perf_counter() - t0
        if raw or zran is None:
            backend_metrics.record(len(raw), elapsed, prefetch=prefetch)
        if prefetch:
            self._metrics.cache.record_prefetch(len(raw), len(group.chunks), elapsed)
        good: list[tuple[ChunkInfo, bytes]] = []
        failures: list[tuple[Future[bytes], NydusError]] = []
        decoded = (decode_group(group, raw, validate=self._validate) if zran is None
                   else decode_zran_group(group, raw, start, zran, validate=self._validate, held=held))
        for c, fut, data in decoded:
            if isinstance(data, bytes):
                fut.set_result(data)
                good.append((c, data))
            else:
                failures.append((fut, data))
        for fut, error in failures:
            fut.set_exception(error)
        blob.store(good)
        self._inflight.release(group)
        return len(raw)
