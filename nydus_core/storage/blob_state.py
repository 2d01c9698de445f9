"""Per-blob state of a read pipeline: the blob's id and codecs, and its local cache (reads and writes).

:func:`open_blob_states` resolves the image's compressor and digester plugins for every blob and opens
each blob's cache; :class:`BlobState` is what the other collaborators of
:class:`~nydus_core.storage.ReadPipeline` use to read a cached chunk range, ask whether a chunk is
ready and store verified chunks (a failed cache write is logged, never the reader's error).
Internal to the pipeline: plugins use :class:`~nydus_core.storage.ReadPipeline`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence

from ..errors import BackendError, NydusError, plugin_errors
from ..interfaces import Backend, BlobCache, CachePolicy, Compressor, Digester
from ..plugins import compressor_by_id, digester_by_id
from ..rafs.image import RafsImage
from ..rafs.model import BlobInfo, ChunkInfo
from ..rafs.zran_read import ContextCache, ZranBlob, is_zran, load_zran_blob, meta_blob_id

__all__ = ["BlobState", "open_blob_states"]

log = logging.getLogger("nydus_core.storage.pipeline")


class BlobState:
    """One blob of the image as the pipeline uses it: id, codecs, and its cache (if any)."""

    __slots__ = ("_zran", "_zran_lock", "blob_cache", "blob_id", "compressor", "digester", "index", "info",
                 "is_zran", "zran_contexts")

    def __init__(self, info: BlobInfo, blob_id: str, compressor: Compressor, digester: Digester,
                 blob_cache: BlobCache | None) -> None:
        self.info = info
        self.index = info.blob_index
        self.blob_id = blob_id
        self.compressor = compressor
        self.digester = digester
        self.blob_cache = blob_cache
        #: whether chunks are ZRAN spans of a gzip layer (their contexts load on first use)
        self.is_zran = is_zran(info)
        self._zran: ZranBlob | None = None
        self._zran_lock = threading.Lock()
        #: recently inflated zran contexts (ZRAN blobs only)
        self.zran_contexts: ContextCache | None = ContextCache() if self.is_zran else None

    def zran(self, backend: Backend) -> ZranBlob:
        """Return the ZRAN contexts of this blob, read once from its RAFS blob through ``backend``."""
        zb = self._zran
        if zb is None:
            with self._zran_lock:
                zb = self._zran
                if zb is None:
                    meta_id = meta_blob_id(self.info)

                    def read(offset: int, length: int) -> bytes:
                        with plugin_errors(BackendError, f"backend failed reading RAFS blob {meta_id} "
                                           f"at {offset}+{length}"):
                            return backend.read(meta_id, offset, length)

                    zb = self._zran = load_zran_blob(read, self.info, compressor_by_id)
        return zb

    def read_cached(self, chunk: ChunkInfo, start: int, length: int) -> bytes | None:
        """Return ``length`` bytes at ``start`` within ``chunk`` from the cache, or None."""
        bc = self.blob_cache
        return None if bc is None else bc.read_range(chunk, start, length)

    def is_ready(self, chunk: ChunkInfo) -> bool:
        """Return whether ``chunk`` is in the cache."""
        return self.blob_cache is not None and self.blob_cache.is_ready(chunk)

    def store(self, items: Sequence[tuple[ChunkInfo, bytes]]) -> None:
        """Write verified ``(chunk, data)`` pairs to the cache; a failure is logged (the readers
        already have their bytes, the cache just missed them)."""
        if not items or self.blob_cache is None:
            return
        try:
            self.blob_cache.put_many(items)
        except NydusError as exc:
            log.warning("%s", exc)
        except Exception as exc:  # OSError, or a cache plugin bug: the same, logged
            log.warning("cache write failed for blob %s: %s: %s", self.blob_id, type(exc).__name__, exc)

    def ready_count(self) -> int | None:
        """Return how many chunks the cache holds (None without a cache or when it cannot tell)."""
        return None if self.blob_cache is None else self.blob_cache.ready_count()

    def all_ready(self) -> bool:
        """Return whether every chunk of the blob is cached (False when the cache cannot tell)."""
        n = self.ready_count()
        return n is not None and bool(self.info.chunk_count) and n >= self.info.chunk_count

    def flush(self, timeout: float | None) -> bool:
        """Wait until what was stored is durable; False on timeout."""
        return self.blob_cache is None or self.blob_cache.flush(timeout) is not False

    def close(self) -> None:
        """Close the blob's cache (errors are logged)."""
        if self.blob_cache is not None:
            try:
                self.blob_cache.close()
            except OSError as exc:
                log.warning("closing cache of blob %s: %s", self.blob_id, exc)


def open_blob_states(image: RafsImage, cache: CachePolicy | None,
                     blob_ids: Sequence[str]) -> list[BlobState]:
    """Return one :class:`BlobState` per blob of ``image`` (codec plugins resolved, caches opened)."""
    if len(blob_ids) != len(image.blobs):
        raise ValueError("blob_ids must name every blob of the image")
    where = f"recorded in {getattr(image, 'path', 'the image')}"
    out: list[BlobState] = []
    for info, bid in zip(image.blobs, blob_ids, strict=True):
        comp = compressor_by_id(info.compressor, where=where)
        dig = digester_by_id(info.digester, where=where)
        if bid != info.blob_id:
            info = dataclasses.replace(info, blob_id=bid)
        bc = cache.open_blob(info) if cache is not None else None
        out.append(BlobState(info, bid, comp, dig, bc))
    return out
