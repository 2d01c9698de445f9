"""The ``blobcache`` cache policy (alias ``filecache``): one :class:`BlobFile` per blob in ``work_dir``,
plus the optional size cap (``max_size``, beyond upstream) with least-recently-used eviction.

Eviction order when the cap is exceeded: first whole blobs this process does not use (least
recently used first, by the time their chunk map was last written; skipped while another process
has them open), then chunks of open blobs in least-recently-used order (reads and writes refresh a
chunk), freeing their blocks by punching holes. A blob another process also has open is never
punched. Usage is counted as the 4 KiB-aligned size of ready chunks (plus what other blobs occupy
on disk at start).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from nydus_core.errors import CacheError, ConfigError
from nydus_core.interfaces import CachePolicy
from nydus_core.rafs.model import BlobInfo
from nydus_core.sizes import parse_size as parse_bytes

from .blobfile import BlobFile, Syncer, aligned_size
from .manage import list_entries, remove_blob, run_gc

__all__ = ["BlobCachePolicy", "parse_size"]

log = logging.getLogger(__name__)

def parse_size(value: Any, *, key: str = "max_size") -> int:
    """Parse a byte count: an integer, or a string like ``"512M"``, ``"10GiB"`` (binary units)."""
    try:
        return parse_bytes(value)
    except ValueError as exc:
        raise ConfigError(str(exc), key=key) from None


def _bool(config: Mapping[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"expected a boolean, got {value!r}", key=key)
    return value


class BlobCachePolicy(CachePolicy):
    """Keeps each blob's uncompressed image in ``<work_dir>/<blob_id>.blob.data``.

    Keys: ``work_dir`` (default ``.``), upstream's ``disable_indexed_map`` (accepted; readiness is
    always journaled), ``enable_encryption``/``enable_convergent_encryption`` (refused: not
    supported), and ours: ``max_size`` (bytes or ``"10G"``; 0 = no cap).
    """

    name = "blobcache"
    aliases = ("filecache",)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check the cache's ``config`` section and fill in defaults."""
        out = dict(config)
        work_dir = out.get("work_dir", ".")
        if not isinstance(work_dir, str) or not work_dir:
            raise ConfigError(f"expected a directory path, got {work_dir!r}", key="work_dir")
        out["work_dir"] = work_dir
        out["disable_indexed_map"] = _bool(out, "disable_indexed_map")
        for key in ("enable_encryption", "enable_convergent_encryption"):
            if _bool(out, key):
                raise ConfigError("cache encryption is not supported by nydus-py's blobcache", key=key)
            out[key] = False
        out["max_size"] = parse_size(out.get("max_size", 0))
        return out

    def __init__(self, config: Mapping[str, Any], *, validate: bool = False) -> None:
        super().__init__(self.validate_config(config), validate=validate)
        self.work_dir = os.path.abspath(self.config["work_dir"])
        self.max_size: int = self.config["max_size"]
        try:
            # private whatever the umask: another local user must not plant or read cache data
            os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"{self.work_dir}: cannot create the cache directory: {exc.strerror or exc}") from None
        if not os.access(self.work_dir, os.W_OK):
            raise CacheError(f"{self.work_dir}: the cache directory is not writable")
        mode = os.stat(self.work_dir).st_mode
        if mode & 0o022 and not mode & 0o1000:
            log.warning("%s: the cache directory is writable by other users (mode %o): they could plant "
                        "cache data; make it 0700", self.work_dir, mode & 0o7777)
        self._lock = threading.Lock()
        self._blobs: dict[str, BlobFile] = {}
        #: (blob id, offset) -> (aligned size, chunk index or -1), least recently used first
        self._lru: OrderedDict[tuple[str, int], tuple[int, int]] = OrderedDict()
        self._used = 0
        self._foreign: dict[str, int] = {}
        self.evicted_bytes = 0
        self.evictions = 0
        self._syncer: Syncer | None = None
        if self.max_size:
            for entry in sorted(list_entries(self.work_dir), key=lambda e: e["last_used"]):
                self._foreign[entry["blob_id"]] = entry["disk_usage"]
                self._used += entry["disk_usage"]

    # -- blobs ------------------------------------------------------------------------------------

    def open_blob(self, blob: BlobInfo) -> BlobFile:
        """Return the cache of ``blob`` (shared by every user in this process; close it when done)."""
        with self._lock:
            bf = self._blobs.get(blob.blob_id)
            if bf is not None:
                bf.refs += 1
                return bf
            digester = None
            if self.validate:
                from nydus_core.plugins import digester_by_id

                digester = digester_by_id(blob.digester, where=f"recorded for blob {blob.blob_id}")
            if self._syncer is None:
                self._syncer = Syncer()
            bf = BlobFile(self.work_dir, blob, validate=self.validate, digester=digester,
                          on_put=self._on_put if self.max_size else None,
                          on_hit=self._on_hit if self.max_size else None, syncer=self._syncer)
            bf.release = self._release
            self._blobs[blob.blob_id] = bf
            if self.max_size:
                self._used -= self._foreign.pop(blob.blob_id, 0)
                old = [((blob.blob_id, off), (aligned_size(size), index))
                       for off, size, index in bf.ready_offsets()]
                fresh = OrderedDict(old)
                fresh.update(self._lru)  # what is already there is older than anything used now
                self._lru = fresh
                self._used += sum(size for _, (size, _i) in old)
        if self.max_size and self._used > self.max_size:
            self._evict()
        return bf

    def _release(self, bf: BlobFile) -> None:
        with self._lock:
            bf.refs -= 1
            if bf.refs > 0:
                return
            self._blobs.pop(bf.blob_id, None)
            if self.max_size:
                keys = [k for k in self._lru if k[0] == bf.blob_id]
                size = sum(self._lru.pop(k)[0] for k in keys)
                self._used -= size
                self._foreign[bf.blob_id] = size
                self._used += size
        bf.shutdown()

    # -- size cap ---------------------------------------------------------------------------------

    def _on_hit(self, bf: BlobFile, offset: int) -> None:
        key = (bf.blob_id, offset)
        with self._lock:
            if key in self._lru:
                self._lru.move_to_end(key)

    def _on_put(self, bf: BlobFile, added: list[tuple[int, int, int]]) -> None:
        with self._lock:
            for off, size, index in added:
                key = (bf.blob_id, off)
                if key not in self._lru:
                    a = aligned_size(size)
                    self._lru[key] = (a, index)
                    self._used += a
            over = self._used > self.max_size
        if over:
            self._evict()

    def _evict(self) -> None:
        """Free space until usage is within ``max_size``: idle blobs first, then LRU chunks."""
        with self._lock:
            foreign = list(self._foreign)  # oldest first: insertion order is by last use
        for blob_id in foreign:
            if self._used <= self.max_size:
                return
            if remove_blob(self.work_dir, blob_id):
                with self._lock:
                    size = self._foreign.pop(blob_id, 0)
                    self._used -= size
                    self.evicted_bytes += size
                    self.evictions += 1
        victims: dict[str, list[tuple[int, int]]] = {}
        punchable: dict[str, bool] = {}
        with self._lock:
            excess = self._used - self.max_size
            if excess <= 0:
                return
            for key in list(self._lru):
                if excess <= 0:
                    break
                blob_id, off = key
                bf = self._blobs.get(blob_id)
                if bf is None:
                    continue
                ok = punchable.get(blob_id)
                if ok is None:
                    ok = punchable[blob_id] = bf.can_punch()
                if not ok:
                    continue
                size, index = self._lru.pop(key)
                self._used -= size
                excess -= size
                victims.setdefault(blob_id, []).append((off, index))
            blobs = {bid: self._blobs[bid] for bid in victims}
        for blob_id, offs in victims.items():
            freed = blobs[blob_id].evict(offs)
            with self._lock:
                self.evicted_bytes += freed
                self.evictions += len(offs)
        if any(not ok for ok in punchable.values()) and self._used > self.max_size:
            log.warning("%s: over max_size (%d > %d) but some blobs are in use by other processes",
                        self.work_dir, self._used, self.max_size)

    def used_bytes(self) -> int:
        """Return the bytes counted against ``max_size`` (ready chunks, plus idle blobs on disk)."""
        with self._lock:
            if self.max_size:
                return self._used
            blobs = list(self._blobs.values())
        return sum(b.used_bytes() for b in blobs)

    def stats(self) -> dict[str, Any]:
        """Return usage counters."""
        with self._lock:
            blobs = list(self._blobs.values())
        return {
            "work_dir": self.work_dir,
            "max_size": self.max_size,
            "used_bytes": self.used_bytes(),
            "open_blobs": len(blobs),
            "ready_chunks": sum(b.ready_count() for b in blobs),
            "underlying_files": sorted(p for b in blobs for p in (b.data_path, b.map_path)),
            "evictions": self.evictions,
            "evicted_bytes": self.evicted_bytes,
        }

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every chunk written so far is durable and recorded."""
        with self._lock:
            blobs = list(self._blobs.values())
        return all(bf.flush(timeout) for bf in blobs)

    def close(self) -> None:
        """Close every blob still open (recording what is pending) and stop the sync thread."""
        with self._lock:
            blobs = list(self._blobs.values())
            self._blobs.clear()
            syncer, self._syncer = self._syncer, None
        for bf in blobs:
            bf.shutdown()
        if syncer is not None:
            syncer.close()

    # -- management (``nydus cache``) -----------------------------------------------------------

    @classmethod
    def list_entries(cls, work_dir: str) -> list[dict[str, Any]]:
        """Return one dict per cached blob in ``work_dir`` (id, sizes, ready chunks, last use)."""
        return list_entries(work_dir)

    @classmethod
    def gc(cls, work_dir: str, *, max_size: int | None = None,
           remove_all: bool = False) -> list[dict[str, Any]]:
        """Remove idle blobs (least recently used first) until ``work_dir`` fits in ``max_size``,
        or all idle blobs with ``remove_all``, plus leftovers; return what was removed."""
        return run_gc(work_dir, max_size=max_size, remove_all=remove_all)

