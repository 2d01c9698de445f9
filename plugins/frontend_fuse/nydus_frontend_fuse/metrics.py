"""Filesystem-operation metrics of one mounted RAFS instance, in upstream nydusd's JSON shapes.

Upstream keeps one ``GlobalIoStats`` per instance (``/api/v1/metrics``), optional per-file counters
(``iostats_files``, ``/api/v1/metrics/files``), an access-pattern record per file read
(``access_pattern``, ``/api/v1/metrics/pattern``) and the set of files read since the last query
(``latest_read_files``, ``/api/v1/metrics/files?latest=true``). Counters are plain ints updated from
the trio thread only, so they need no locks.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any


class Fop(enum.IntEnum):
    """Upstream's ``StatsFop`` order: index into the ``fop_*`` arrays."""

    GETATTR = 0
    READLINK = 1
    OPEN = 2
    RELEASE = 3
    READ = 4
    STATFS = 5
    GETXATTR = 6
    LISTXATTR = 7
    OPENDIR = 8
    LOOKUP = 9
    READDIR = 10
    READDIRPLUS = 11
    ACCESS = 12
    FORGET = 13
    BATCH_FORGET = 14


FOP_COUNT = len(Fop)
BLOCK_BUCKETS = 8  # <=1K, 4K, 16K, 64K, 128K, 512K, 1M, >1M
LATENCY_BUCKETS = 8  # <=1ms, 20ms, 50ms, 100ms, 500ms, 1s, 2s, >2s
_LATENCY_LIMITS_US = (1_000, 20_000, 50_000, 100_000, 500_000, 1_000_000, 2_000_000)


def block_bucket(size: int) -> int:
    """Return upstream's request-size bucket index of a read of ``size`` bytes."""
    for i, shift in enumerate((10, 12, 14, 16, 17, 19, 20)):
        if size >> shift == 0:
            return i
    return 7


def latency_bucket(micros: int) -> int:
    """Return upstream's latency bucket index of an operation that took ``micros`` µs."""
    for i, limit in enumerate(_LATENCY_LIMITS_US):
        if micros <= limit:
            return i
    return 7


@dataclass
class FileStats:
    """Per-file counters (``iostats_files``)."""

    nr_open: int = 0
    nr_max_open: int = 0
    total_fops: int = 0
    data_read: int = 0
    block_count_read: list[int] = field(default_factory=lambda: [0] * BLOCK_BUCKETS)
    fop_hits: list[int] = field(default_factory=lambda: [0] * FOP_COUNT)
    fop_errors: list[int] = field(default_factory=lambda: [0] * FOP_COUNT)

    def as_dict(self) -> dict[str, Any]:
        """Return upstream's ``InodeIoStats`` JSON object."""
        return {
            "nr_open": self.nr_open, "nr_max_open": self.nr_max_open, "total_fops": self.total_fops,
            "data_read": self.data_read, "block_count_read": list(self.block_count_read),
            "fop_hits": list(self.fop_hits), "fop_errors": list(self.fop_errors),
        }


@dataclass
class AccessRecord:
    """When a file was first read, and how often it was read (``access_pattern``)."""

    ino: int
    path: str
    nr_read: int = 0
    first_ns: int = 0
    order: int = 0


class FsMetrics:
    """The counters of one RAFS instance, exported in upstream's JSON shapes."""

    def __init__(
        self,
        instance_id: str,
        *,
        files: bool = False,
        access_pattern: bool = False,
        latest_read_files: bool = False,
    ) -> None:
        self.id = instance_id
        self.files_enabled = files
        self.access_pattern_enabled = access_pattern
        self.latest_enabled = latest_read_files
        self.measure_latency = True
        self.data_read = 0
        self.block_count_read = [0] * BLOCK_BUCKETS
        self.fop_hits = [0] * FOP_COUNT
        self.fop_errors = [0] * FOP_COUNT
        self.fop_latency_total = [0] * FOP_COUNT
        self.read_latency_dist = [0] * LATENCY_BUCKETS
        self.nr_opens = 0
        self.nr_max_opens = 0
        self.last_fop_tp = 0
        self._files: dict[int, FileStats] = {}
        self._pattern: dict[int, AccessRecord] = {}
        self._latest: set[int] = set()
        self._order = 0

    # -- recording ----------------------------------------------------------------------------

    def record(self, fop: Fop, ino: int, ok: bool, size: int = 0, started_ns: int = 0) -> None:
        """Account one operation; ``size`` is the byte count of a successful read."""
        now = time.monotonic_ns()
        self.last_fop_tp = int(time.time())
        if ok:
            self.fop_hits[fop] += 1
            if fop is Fop.READ:
                self.data_read += size
                self.block_count_read[block_bucket(size)] += 1
            elif fop is Fop.OPEN:
                self.nr_opens += 1
                self.nr_max_opens = max(self.nr_max_opens, self.nr_opens)
            elif fop is Fop.RELEASE and self.nr_opens:
                self.nr_opens -= 1
        else:
            self.fop_errors[fop] += 1
        if started_ns and self.measure_latency:
            micros = (now - started_ns) // 1000
            self.fop_latency_total[fop] += micros
            if fop is Fop.READ:
                self.read_latency_dist[latency_bucket(micros)] += 1
        if self.files_enabled and ino:
            fs = self._files.get(ino)
            if fs is None:
                fs = self._files[ino] = FileStats()
            fs.total_fops += 1
            if ok:
                fs.fop_hits[fop] += 1
                if fop is Fop.READ:
                    fs.data_read += size
                    fs.block_count_read[block_bucket(size)] += 1
                elif fop is Fop.OPEN:
                    fs.nr_open += 1
                    fs.nr_max_open = max(fs.nr_max_open, fs.nr_open)
                elif fop is Fop.RELEASE and fs.nr_open:
                    fs.nr_open -= 1
            else:
                fs.fop_errors[fop] += 1
        if fop is Fop.READ and ok and self.latest_enabled:
            self._latest.add(ino)

    def record_read_access(self, ino: int, path_of: Any) -> None:
        """Note a read of ``ino`` for the access pattern; ``path_of(ino)`` names it on first read."""
        if not self.access_pattern_enabled:
            return
        rec = self._pattern.get(ino)
        if rec is None:
            self._order += 1
            try:
                path = path_of(ino)
            except Exception:  # a path is a courtesy; the record must not fail the read
                path = ""
            rec = self._pattern[ino] = AccessRecord(ino, path, 0, time.time_ns(), self._order)
        rec.nr_read += 1

    # -- export -------------------------------------------------------------------------------

    def global_stats(self) -> dict[str, Any]:
        """Return ``GET /api/v1/metrics`` (upstream ``GlobalIoStats``)."""
        return {
            "files_account_enabled": self.files_enabled,
            "access_pattern_enabled": self.access_pattern_enabled,
            "record_latest_read_files_enabled": self.latest_enabled,
            "measure_latency": self.measure_latency,
            "id": self.id,
            "data_read": self.data_read,
            "block_count_read": list(self.block_count_read),
            "fop_hits": list(self.fop_hits),
            "fop_errors": list(self.fop_errors),
            "fop_cumulative_latency_total": list(self.fop_latency_total),
            "read_latency_dist": list(self.read_latency_dist),
            "nr_opens": self.nr_opens,
            "nr_max_opens": self.nr_max_opens,
            "last_fop_tp": self.last_fop_tp,
        }

    def files_stats(self) -> dict[str, Any]:
        """Return ``GET /api/v1/metrics/files`` (per-inode counters keyed by ino)."""
        return {str(ino): fs.as_dict() for ino, fs in sorted(self._files.items())}

    def latest_read_files(self) -> list[list[int]]:
        """Return and clear the inodes read since the last call, as ``[start, end]`` ranges."""
        inos = sorted(self._latest)
        self._latest.clear()
        ranges: list[list[int]] = []
        for ino in inos:
            if ranges and ranges[-1][1] + 1 == ino:
                ranges[-1][1] = ino
            else:
                ranges.append([ino, ino])
        return ranges

    def access_patterns(self) -> list[dict[str, Any]]:
        """Return ``GET /api/v1/metrics/pattern``: files read, in first-access order."""
        out = []
        for rec in sorted(self._pattern.values(), key=lambda r: r.order):
            secs, nanos = divmod(rec.first_ns, 1_000_000_000)
            out.append({
                "ino": rec.ino, "path": rec.path, "nr_read": rec.nr_read,
                "first_access_time_secs": secs, "first_access_time_nanos": nanos,
            })
        return out

    def access_list(self) -> list[str]:
        """Return the paths read, first read first (what ``--prefetch-policy fs`` takes on stdin)."""
        return [r.path for r in sorted(self._pattern.values(), key=lambda r: r.order) if r.path]
