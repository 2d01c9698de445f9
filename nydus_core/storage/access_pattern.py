"""Which files are read first, in order (upstream's ``access_pattern``).

The pipeline records every read's inode; the first read of an inode fixes its place in the order.
:meth:`AccessPattern.records` gives upstream's ``/api/v1/metrics/pattern`` entries and
:meth:`AccessPattern.paths` the list of absolute paths, in first-access order, that
``nydus-image create --prefetch-policy fs`` reads on stdin: feed it back to the build and the next
image prefetches exactly what this workload touched first.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

from ..rafs.image import RafsImage

__all__ = ["AccessPattern"]


class AccessPattern:
    """A recorder of first accesses per inode (thread-safe; counting reads is best effort)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = itertools.count()
        # ino -> [order, nr_read, first_access_ns, path or None]
        self._records: dict[int, list[Any]] = {}

    def record(self, ino: int, path: bytes | None = None) -> None:
        """Count one read of ``ino`` (``path`` when the caller knows it)."""
        rec = self._records.get(ino)
        if rec is not None:
            rec[1] += 1
            return
        with self._lock:
            rec = self._records.get(ino)
            if rec is None:
                self._records[ino] = [next(self._seq), 1, time.time_ns(), path]
            else:
                rec[1] += 1

    def note_path(self, ino: int, path: bytes) -> None:
        """Remember the path of ``ino`` (saves a walk when exporting)."""
        rec = self._records.get(ino)
        if rec is not None and rec[3] is None:
            rec[3] = path

    def __len__(self) -> int:
        return len(self._records)

    def inodes(self) -> list[int]:
        """Return the inodes read so far, in first-access order."""
        with self._lock:
            items = sorted(self._records.items(), key=lambda kv: kv[1][0])
        return [ino for ino, _ in items]

    def records(self) -> list[dict[str, int]]:
        """Return upstream's pattern entries: ``{ino, nr_read, first_access_time_secs,
        first_access_time_nanos}``, in first-access order."""
        with self._lock:
            items = sorted(self._records.items(), key=lambda kv: kv[1][0])
        return [
            {"ino": ino, "nr_read": rec[1], "first_access_time_secs": rec[2] // 1_000_000_000,
             "first_access_time_nanos": rec[2] % 1_000_000_000}
            for ino, rec in items
        ]

    def paths(self, image: RafsImage) -> list[str]:
        """Return the absolute paths of the files read, in first-access order (one per inode; for a
        hard link the first name in the image's walk order when the path was not recorded)."""
        with self._lock:
            items = sorted(self._records.items(), key=lambda kv: kv[1][0])
        known = {ino: rec[3] for ino, rec in items if rec[3] is not None}
        missing = {ino for ino, rec in items if rec[3] is None}
        if missing:
            for path, ino in image.walk():
                if ino in missing:
                    known[ino] = path
                    missing.discard(ino)
                    if not missing:
                        break
        return [os.fsdecode(known[ino]) for ino, _ in items if ino in known]

    def export(self, image: RafsImage) -> str:
        """Return :meth:`paths` as text, one path per line (the ``--prefetch-policy fs`` input);
        names containing a newline cannot be expressed in that format and are left out."""
        return "".join(p + "\n" for p in self.paths(image) if "\n" not in p)

    def clear(self) -> None:
        """Forget everything recorded."""
        with self._lock:
            self._records.clear()
