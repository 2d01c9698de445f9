"""Counters of the read pipeline, shaped like upstream nydusd's metrics.

- :class:`BackendMetrics` -> ``GET /api/v1/metrics/backend``: request count, errors, bytes,
  cumulative latency and upstream's 8x8 histogram (request size class x latency class).
- :class:`CacheMetrics` -> ``GET /api/v1/metrics/blobcache``: whole/partial hits per user read,
  chunk hits/misses, prefetch counters and times.
- :class:`ReadMetrics`: user-facing totals (bytes asked, bytes returned, reads), which together
  with the backend bytes give read amplification.

Updates take a lock (a few integer additions); snapshots are plain dicts ready for JSON.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["BackendMetrics", "CacheMetrics", "PipelineMetrics", "ReadMetrics", "latency_class", "size_class"]

#: Upper bounds of upstream's request-size classes (bytes): ≤1K, ≤4K, ≤16K, ≤64K, ≤128K, ≤512K, ≤1M, more.
SIZE_CLASSES = (1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 17, 1 << 19, 1 << 20)
#: Upper bounds of upstream's latency classes (µs): ≤1ms, ≤20ms, ≤50ms, ≤100ms, ≤500ms, ≤1s, ≤2s, more.
LATENCY_CLASSES_US = (1_000, 20_000, 50_000, 100_000, 500_000, 1_000_000, 2_000_000)


def size_class(size: int) -> int:
    """Return upstream's request-size class (0..7) of ``size`` bytes."""
    for i, bound in enumerate(SIZE_CLASSES):
        if size < bound:
            return i
    return len(SIZE_CLASSES)


def latency_class(micros: int) -> int:
    """Return upstream's latency class (0..7) of a duration in microseconds."""
    for i, bound in enumerate(LATENCY_CLASSES_US):
        if micros <= bound:
            return i
    return len(LATENCY_CLASSES_US)


class BackendMetrics:
    """Backend request counters (one per pipeline)."""

    def __init__(self, backend_type: str = "", id: str = "") -> None:
        self.id = id
        self.backend_type = backend_type
        self._lock = threading.Lock()
        self.read_count = 0
        self.read_errors = 0
        self.read_amount_total = 0
        self.latency_micros_total = 0
        self.prefetch_read_count = 0
        self.prefetch_amount_total = 0
        self.latency_dist = [[0] * 8 for _ in range(8)]
        self.latency_millis_dist = [0] * 8
        self.count_block_size_dist = [0] * 8

    def record(self, size: int, seconds: float, *, error: bool = False, prefetch: bool = False) -> None:
        """Count one backend request of ``size`` bytes that took ``seconds``."""
        micros = int(seconds * 1_000_000)
        sc, lc = size_class(size), latency_class(micros)
        with self._lock:
            self.read_count += 1
            self.read_amount_total += size
            self.latency_micros_total += micros
            if error:
                self.read_errors += 1
            if prefetch:
                self.prefetch_read_count += 1
                self.prefetch_amount_total += size
            self.latency_dist[sc][lc] += 1
            self.latency_millis_dist[sc] += micros // 1000
            self.count_block_size_dist[sc] += 1

    def snapshot(self) -> dict[str, Any]:
        """Return the counters in upstream's ``/api/v1/metrics/backend`` shape."""
        with self._lock:
            return {
                "id": self.id,
                "backend_type": self.backend_type,
                "read_count": self.read_count,
                "read_errors": self.read_errors,
                "read_amount_total": self.read_amount_total,
                "read_cumulative_latency_millis_total": self.latency_micros_total // 1000,
                "read_cumulative_latency_millis_dist": list(self.latency_millis_dist),
                "read_count_block_size_dist": list(self.count_block_size_dist),
                "read_latency_dist": [list(row) for row in self.latency_dist],
                # ours, beyond upstream: how much of the above was prefetch
                "prefetch_read_count": self.prefetch_read_count,
                "prefetch_amount_total": self.prefetch_amount_total,
            }


class CacheMetrics:
    """Cache counters in the shape of upstream's blobcache metrics."""

    def __init__(self, id: str = "", store_path: str = "") -> None:
        self.id = id
        self.store_path = store_path
        self._lock = threading.Lock()
        self.underlying_files: set[str] = set()
        self.partial_hits = 0
        self.whole_hits = 0
        self.total = 0
        self.chunk_hits = 0
        self.chunk_misses = 0
        self.prefetch_data_amount = 0
        self.prefetch_requests_count = 0
        self.prefetch_unmerged_chunks = 0
        self.prefetch_workers = 0
        self.prefetch_cumulative_millis = 0
        self.prefetch_begin: float | None = None
        self.prefetch_end: float | None = None
        self.buffered_backend_size = 0

    def record_read(self, hits: int, misses: int) -> None:
        """Count one user read that touched ``hits`` cached and ``misses`` uncached chunks."""
        with self._lock:
            self.total += 1
            self.chunk_hits += hits
            self.chunk_misses += misses
            if hits and not misses:
                self.whole_hits += 1
            elif hits:
                self.partial_hits += 1

    def record_prefetch(self, size: int, chunks: int, seconds: float) -> None:
        """Count one prefetch request of ``chunks`` chunks (``size`` compressed bytes)."""
        with self._lock:
            self.prefetch_data_amount += size
            self.prefetch_requests_count += 1
            self.prefetch_unmerged_chunks += chunks
            self.prefetch_cumulative_millis += int(seconds * 1000)

    def prefetch_started(self, workers: int) -> None:
        """Note that prefetch began with ``workers`` threads."""
        with self._lock:
            self.prefetch_workers = workers
            self.prefetch_begin = time.time()
            self.prefetch_end = None

    def prefetch_finished(self) -> None:
        """Note that prefetch ended."""
        with self._lock:
            self.prefetch_end = time.time()
            self.prefetch_workers = 0

    def snapshot(self, *, entries_count: int = 0, data_all_ready: bool = False) -> dict[str, Any]:
        """Return the counters in upstream's ``/api/v1/metrics/blobcache`` shape."""

        def split(t: float | None) -> tuple[int, int]:
            if t is None:
                return 0, 0
            return int(t), int((t - int(t)) * 1000)

        with self._lock:
            bs, bm = split(self.prefetch_begin)
            es, em = split(self.prefetch_end)
            return {
                "id": self.id,
                "underlying_files": sorted(self.underlying_files),
                "store_path": self.store_path,
                "partial_hits": self.partial_hits,
                "whole_hits": self.whole_hits,
                "total": self.total,
                "entries_count": entries_count,
                "prefetch_data_amount": self.prefetch_data_amount,
                "prefetch_requests_count": self.prefetch_requests_count,
                "prefetch_workers": self.prefetch_workers,
                "prefetch_unmerged_chunks": self.prefetch_unmerged_chunks,
                "prefetch_cumulative_time_millis": self.prefetch_cumulative_millis,
                "prefetch_begin_time_secs": bs,
                "prefetch_begin_time_millis": bm,
                "prefetch_end_time_secs": es,
                "prefetch_end_time_millis": em,
                "buffered_backend_size": self.buffered_backend_size,
                "data_all_ready": data_all_ready,
                # ours, beyond upstream: chunk-level counts
                "chunk_hits": self.chunk_hits,
                "chunk_misses": self.chunk_misses,
            }


class ReadMetrics:
    """What users asked for and got: the denominator of read amplification."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reads = 0
        self.bytes_requested = 0
        self.bytes_read = 0
        self.errors = 0

    def record(self, requested: int, returned: int) -> None:
        """Count one user read."""
        with self._lock:
            self.reads += 1
            self.bytes_requested += requested
            self.bytes_read += returned

    def record_error(self) -> None:
        """Count one failed user read."""
        with self._lock:
            self.errors += 1

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a dict."""
        with self._lock:
            return {"reads": self.reads, "bytes_requested": self.bytes_requested,
                    "bytes_read": self.bytes_read, "errors": self.errors}


class PipelineMetrics:
    """The counters of one read pipeline: ``backend``, ``cache`` (blobcache) and user ``reads``."""

    def __init__(self, backend_type: str, id: str = "", store_path: str = "") -> None:
        self.backend = BackendMetrics(backend_type, id)
        self.cache = CacheMetrics(id, store_path)
        self.reads = ReadMetrics()

    def set_id(self, id: str) -> None:
        """Name the pipeline in the backend and blobcache snapshots (nydusd uses the mountpoint)."""
        self.backend.id = id
        self.cache.id = id

    def snapshot(self, *, entries_count: int, data_all_ready: bool) -> dict[str, dict[str, Any]]:
        """Return ``{"backend": ..., "blobcache": ..., "reads": ...}`` (upstream's shapes + ours)."""
        return {
            "backend": self.backend.snapshot(),
            "blobcache": self.cache.snapshot(entries_count=entries_count, data_all_ready=data_all_ready),
            "reads": self.reads.snapshot(),
        }
