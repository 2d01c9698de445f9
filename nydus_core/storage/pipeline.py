"""The read pipeline: (inode, offset, length) -> bytes, through the cache and the backend.

For each chunk a read touches, the blob cache is asked first (a hit is a ``pread`` of the
uncompressed cache file, no decompression). Missing chunks of one blob that are adjacent in the
blob become one ranged backend request, extended with the blob's next chunks (other files' too,
once the blob-order index of a v6 image is built; else the file's own) up to ``amplify_io`` bytes
(upstream's user-IO amplification; 0 turns it off). A chunk being fetched is registered
in-flight, so concurrent readers of it wait for that one fetch. Fetched bytes are decompressed by
the image's compressor plugin, verified by its digester plugin when ``digest_validate`` is set
(a mismatch is an :class:`~nydus_core.errors.IntegrityError` for the readers of that chunk only;
bad bytes are neither cached nor returned), handed to the waiting readers, then written to the
cache, which marks them ready only after the data is durable.

A reader runs one of its requests itself (no hand-off); the rest, and all prefetch requests, run on
a bounded :class:`~nydus_core.storage.pool.FetchPool` where on-demand requests go ahead of
prefetch; a reader that needs a chunk a queued prefetch request holds promotes that request.
Everything here is synchronous and thread-safe. The hot path has no pluggy and no logging.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import Any

from ..errors import BackendError, CacheError, IntegrityError, NydusError, plugin_errors
from ..interfaces import Backend, BlobCache, CachePolicy, Compressor, Digester
from ..plugins import compressor_by_id, digester_by_id
from ..rafs.chunkdata import decode_chunk
from ..rafs.image import RafsImage
from ..rafs.model import BlobInfo, ChunkInfo
from .access_pattern import AccessPattern
from .blobids import resolve_blob_ids
from .pool import ON_DEMAND, PREFETCH, FetchPool
from .stats import BackendMetrics, CacheMetrics, ReadMetrics

__all__ = ["BlobState", "ReadPipeline"]

log = logging.getLogger(__name__)

#: Largest single backend request an on-demand read issues when amplify_io is smaller.
MAX_USER_REQUEST = 4 << 20
_FILE_CACHE_ENTRIES = 1 << 15


class BlobState:
    """One blob of the image as the pipeline uses it: id, codecs, and its cache (if any)."""

    __slots__ = ("blob_cache", "blob_id", "compressor", "digester", "index", "info")

    def __init__(self, info: BlobInfo, blob_id: str, compressor: Compressor, digester: Digester,
                 blob_cache: BlobCache | None) -> None:
        self.info = info
        self.index = info.blob_index
        self.blob_id = blob_id
        self.compressor = compressor
        self.digester = digester
        self.blob_cache = blob_cache

    def cached(self, chunk: ChunkInfo, start: int, length: int) -> bytes | None:
        """Return ``length`` bytes at ``start`` within ``chunk`` from the cache, or None."""
        bc = self.blob_cache
        return None if bc is None else bc.read_range(chunk, start, length)

    def is_ready(self, chunk: ChunkInfo) -> bool:
        """Return whether ``chunk`` is in the cache."""
        return self.blob_cache is not None and self.blob_cache.is_ready(chunk)


class _File:
    """A regular file's size and chunk records, with a fast offset -> chunk lookup."""

    __slots__ = ("chunks", "dense", "offsets", "size")

    def __init__(self, size: int, chunks: Sequence[ChunkInfo], chunk_size: int) -> None:
        self.size = size
        self.chunks = chunks
        n = len(chunks)
        self.dense = n == 0 or (
            chunks[0].file_offset == 0
            and chunks[-1].file_offset == (n - 1) * chunk_size
            and n == -(-size // chunk_size)
        )
        self.offsets = None if self.dense else [c.file_offset for c in chunks]

    def index_of(self, offset: int, chunk_size: int) -> int:
        """Return the index of the first chunk that ends after ``offset``."""
        if self.dense:
            return offset // chunk_size
        i = bisect.bisect_right(self.offsets, offset) - 1  # type: ignore[arg-type]
        if i < 0:
            return 0
        c = self.chunks[i]
        return i if offset < c.file_offset + c.uncompressed_size else i + 1


class _Group:
    """Chunks of one blob fetched with one ranged backend request."""

    __slots__ = ("blob", "chunks", "futures", "pool_future", "priority")

    def __init__(self, blob: BlobState, priority: int) -> None:
        self.blob = blob
        self.chunks: list[ChunkInfo] = []
        self.futures: list[Future[bytes]] = []
        self.pool_future: Future[Any] | None = None
        self.priority = priority

    @property
    def start(self) -> int:
        return self.chunks[0].compressed_offset

    @property
    def end(self) -> int:
        c = self.chunks[-1]
        return c.compressed_offset + c.compressed_size


class ReadPipeline:
    """Serves reads of one image's files from a cache policy and a backend.

    ``blob_ids`` overrides the ids recorded in the image (see :mod:`.blobids`); by default they are
    resolved from the image and its bootstrap path. ``workers`` bounds concurrent backend requests.
    """

    def __init__(
        self,
        image: RafsImage,
        backend: Backend,
        cache: CachePolicy | None = None,
        *,
        digest_validate: bool = False,
        amplify_io: int = 1 << 20,
        workers: int = 8,
        blob_ids: Sequence[str] | None = None,
        access_pattern: bool | AccessPattern = False,
        id: str = "",
    ) -> None:
        self.image = image
        self.backend = backend
        self.cache = cache
        self.digest_validate = bool(digest_validate)
        self.amplify_io = max(0, int(amplify_io))
        self.chunk_size = image.chunk_size
        self.id = id
        if blob_ids is None:
            blob_ids = resolve_blob_ids(image.blobs, bootstrap_path=getattr(image, "path", None))
        if len(blob_ids) != len(image.blobs):
            raise ValueError("blob_ids must name every blob of the image")
        where = f"recorded in {getattr(image, 'path', 'the image')}"
        self.blobs: list[BlobState] = []
        for info, bid in zip(image.blobs, blob_ids):
            comp = compressor_by_id(info.compressor, where=where)
            dig = digester_by_id(info.digester, where=where)
            if bid != info.blob_id:
                info = _with_id(info, bid)
            bc = cache.open_blob(info) if cache is not None else None
            self.blobs.append(BlobState(info, bid, comp, dig, bc))
        self.backend_metrics = BackendMetrics(getattr(backend, "name", type(backend).__name__), id)
        self.cache_metrics = CacheMetrics(id, str(getattr(cache, "work_dir", "")) if cache else "")
        for b in self.blobs:
            if b.blob_cache is not None and b.blob_cache.data_path:
                self.cache_metrics.underlying_files.add(b.blob_cache.data_path)
        self.read_metrics = ReadMetrics()
        #: the prefetch token bucket all prefetchers of this pipeline share (storage.prefetch)
        self.prefetch_bucket: Any = None
        if isinstance(access_pattern, AccessPattern):
            self.access_pattern: AccessPattern | None = access_pattern
        else:
            self.access_pattern = AccessPattern() if access_pattern else None
        self.pool = FetchPool(workers)
        self._inline_slots = threading.BoundedSemaphore(max(1, workers))
        self._lock = threading.Lock()
        self._quiet = threading.Condition(self._lock)
        self._inflight: dict[tuple[int, int], tuple[Future[bytes], _Group]] = {}
        self._files: OrderedDict[int, _File] = OrderedDict()
        self._orders: dict[int, tuple[list[int], list[ChunkInfo]]] | None = None
        self._files_lock = threading.Lock()
        self._closed = False

    # -- files ------------------------------------------------------------------------------------

    def file(self, ino: int) -> _File:
        """Return the (cached) size and chunk list of regular file ``ino``."""
        f = self._files.get(ino)
        if f is not None:
            return f
        attrs = self.image.getattr(ino)
        if attrs.is_dir:
            raise IsADirectoryError(f"inode {ino} is a directory")
        if not attrs.is_reg:
            raise OSError(f"inode {ino} is not a regular file")
        f = _File(attrs.size, self.image.chunks(ino) if attrs.size else [], self.chunk_size)
        with self._files_lock:
            self._files[ino] = f
            if len(self._files) > _FILE_CACHE_ENTRIES:
                self._files.popitem(last=False)
        return f

    # -- reads ------------------------------------------------------------------------------------

    def read(self, ino: int, offset: int, size: int) -> bytes:
        """Return up to ``size`` bytes of file ``ino`` from ``offset`` (short only at end of file)."""
        if self.access_pattern is not None:
            self.access_pattern.record(ino)
        try:
            data = self._read(ino, offset, size)
        except BaseException:
            self.read_metrics.record_error()
            raise
        self.read_metrics.record(size, len(data))
        return data

    def _read(self, ino: int, offset: int, size: int) -> bytes:
        f = self.file(ino)
        end = min(offset + size, f.size)
        if offset < 0 or size <= 0 or offset >= end:
            return b""
        chunks = f.chunks
        blobs = self.blobs
        i = f.index_of(offset, self.chunk_size)
        n = len(chunks)
        pieces: list[Any] = []
        misses: list[tuple[int, ChunkInfo, int, int, int]] = []
        hits = 0
        pos = offset
        while pos < end:
            c = chunks[i] if i < n else None
            if c is None or c.file_offset > pos:  # a hole: zeros up to the next chunk
                stop = end if c is None else min(end, c.file_offset)
                pieces.append(bytes(stop - pos))
                pos = stop
                continue
            cs = pos - c.file_offset
            ce = min(end - c.file_offset, c.uncompressed_size)
            if ce <= cs:  # chunk shorter than its slot (corrupt or sparse record)
                i += 1
                continue
            data = blobs[c.blob_index].cached(c, cs, ce - cs)
            if data is None:
                misses.append((len(pieces), c, cs, ce, i))
                pieces.append(None)
            else:
                hits += 1
                pieces.append(data)
            pos = c.file_offset + ce
            i += 1
        if misses:
            follow = chunks[misses[-1][4] + 1:] if self.amplify_io else ()
            datas = self.fetch([m[1] for m in misses], follow=follow)
            for (pi, _c, cs, ce, _i), data in zip(misses, datas):
                pieces[pi] = data if (cs == 0 and ce == len(data)) else memoryview(data)[cs:ce]
        if self.cache is not None:
            self.cache_metrics.record_read(hits, len(misses))
        if len(pieces) == 1:
            p = pieces[0]
            return p if isinstance(p, bytes) else bytes(p)
        return b"".join(pieces)

    # -- fetching ---------------------------------------------------------------------------------

    def fetch(self, chunks: Sequence[ChunkInfo], *, follow: Iterable[ChunkInfo] = ()) -> list[bytes]:
        """Return the uncompressed bytes of every chunk in ``chunks`` (an on-demand fetch).

        Ready chunks come from the cache, chunks in flight are waited for, the rest are fetched
        in merged requests; ``follow`` are the chunks after the last one in file order, used for
        read-ahead up to ``amplify_io``.
        """
        futures: list[Future[bytes] | None] = [None] * len(chunks)
        promote: list[_Group] = []
        inline: _Group | None = None
        with self._lock:
            if self._closed:  # before anything is registered in flight
                raise CacheError("read after the image was closed")
            mine: list[tuple[ChunkInfo, Future[bytes]]] = []
            seen: dict[tuple[int, int], Future[bytes] | None] = {}
            for k, c in enumerate(chunks):
                key = (c.blob_index, c.compressed_offset)
                if key in seen:
                    futures[k] = seen[key]
                    continue
                entry = self._inflight.get(key)
                if entry is not None:
                    fut, group = entry
                    if group.priority != ON_DEMAND:
                        promote.append(group)
                elif self.blobs[c.blob_index].is_ready(c):
                    seen[key] = None
                    continue
                else:
                    fut = Future()
                    mine.append((c, fut))
                seen[key] = fut
                futures[k] = fut
            if mine:
                extra = self._read_ahead(mine, follow)
                groups = self._make_groups(mine + extra, ON_DEMAND, self._user_limit())
                # the caller runs one request itself (no hand-off to a worker) when a slot is free
                if self._inline_slots.acquire(blocking=False):
                    inline = groups.pop(0)
                for group in groups:
                    self._submit(group)
        if inline is not None:
            try:
                self._run_group(inline)
            finally:
                self._inline_slots.release()
        for group in promote:
            if group.pool_future is not None:
                self.pool.promote(group.pool_future)
        out: list[bytes] = []
        for k, c in enumerate(chunks):
            fut = futures[k]
            out.append(self._from_cache(c) if fut is None else fut.result())
        return out

    def _from_cache(self, c: ChunkInfo) -> bytes:
        blob = self.blobs[c.blob_index]
        data = blob.cached(c, 0, c.uncompressed_size)
        if data is None:  # evicted meanwhile: fetch it again
            return self.fetch([c])[0]
        return data

    def _blob_order(self, blob_index: int) -> tuple[list[int], list[ChunkInfo]] | None:
        """Return the blob's chunks in blob order (offsets, records) once known, else None.

        Built in the background, once, from the image's chunk table (RAFS v6) when read-ahead can
        keep what it fetches (a cache is configured); until then read-ahead follows the file.
        """
        order = self._orders
        if order is None:
            if self.cache is None or not hasattr(self.image, "chunk_table"):
                self._orders = {}
                return None
            self._orders = {}  # building: nothing yet
            threading.Thread(target=self._build_orders, name="nydus-chunk-order", daemon=True).start()
            return None
        return order.get(blob_index)

    def load_blob_order(self) -> bool:
        """Build the blob-order index now (normally built in the background on the first miss);
        return whether cross-file read-ahead is available."""
        if self.cache is None or not hasattr(self.image, "chunk_table"):
            return False
        self._orders = {}
        self._build_orders()
        return bool(self._orders)

    def _build_orders(self) -> None:
        try:
            table = self.image.chunk_table()  # type: ignore[attr-defined]
        except Exception as exc:  # read-ahead across files is an optimisation only
            log.debug("no blob-order read-ahead: %s", exc)
            return
        per_blob: dict[int, dict[int, ChunkInfo]] = {}
        for c in table:
            per_blob.setdefault(c.blob_index, {}).setdefault(c.compressed_offset, c)
        orders = {}
        for bi, chunks in per_blob.items():
            offsets = sorted(chunks)
            orders[bi] = (offsets, [chunks[o] for o in offsets])
        self._orders = orders

    def _user_limit(self) -> int:
        return max(self.amplify_io, MAX_USER_REQUEST)

    def _read_ahead(self, mine: list[tuple[ChunkInfo, Future[bytes]]],
                    follow: Iterable[ChunkInfo]) -> list[tuple[ChunkInfo, Future[bytes]]]:
        """Pick chunks after the last missing one to fetch in the same request (lock held)."""
        if not self.amplify_io:
            return []
        last = mine[-1][0]
        blob = self.blobs[last.blob_index]
        budget = self.amplify_io - sum(c.compressed_size for c, _ in mine if c.blob_index == last.blob_index)
        end = last.compressed_offset + last.compressed_size
        taken = {(c.blob_index, c.compressed_offset) for c, _ in mine}
        extra: list[tuple[ChunkInfo, Future[bytes]]] = []
        order = self._blob_order(last.blob_index)
        if order is not None:  # the blob's next chunks, whichever files they belong to
            offsets, by_offset = order
            i = bisect.bisect_left(offsets, end)
            follow = by_offset[i:i + 1024]
        for c in follow:
            if c.blob_index != last.blob_index or c.compressed_offset != end:
                break
            if c.compressed_size > budget:
                break
            key = (c.blob_index, c.compressed_offset)
            if key in taken or key in self._inflight or blob.is_ready(c):
                break
            taken.add(key)
            extra.append((c, Future()))
            budget -= c.compressed_size
            end += c.compressed_size
        return extra

    def _make_groups(self, items: list[tuple[ChunkInfo, Future[bytes]]], priority: int,
                     limit: int) -> list[_Group]:
        """Sort chunks by blob and offset and cut them into contiguous requests (lock held)."""
        items.sort(key=lambda it: (it[0].blob_index, it[0].compressed_offset))
        groups: list[_Group] = []
        cur: _Group | None = None
        for c, fut in items:
            if (cur is None or c.blob_index != cur.blob.index or c.compressed_offset != cur.end
                    or c.compressed_offset + c.compressed_size - cur.start > limit):
                cur = _Group(self.blobs[c.blob_index], priority)
                groups.append(cur)
            cur.chunks.append(c)
            cur.futures.append(fut)
            self._inflight[(c.blob_index, c.compressed_offset)] = (fut, cur)
        return groups

    def _submit(self, group: _Group) -> None:
        """Queue ``group`` on the pool (lock held)."""
        pf = self.pool.submit(lambda: self._run_group(group), group.priority)
        group.pool_future = pf
        pf.add_done_callback(lambda f: self._group_done(group, f))

    def _group_done(self, group: _Group, pf: Future[Any]) -> None:
        """If the pool dropped ``group`` (closing) or its run failed unexpectedly, fail its waiters
        instead of leaving them hanging."""
        if pf.cancelled():
            exc: BaseException = CacheError("read cancelled: the image is being closed")
        elif pf.exception() is not None:
            exc = pf.exception()  # type: ignore[assignment]
        else:
            return
        self._finish(group, [(fut, exc) for fut in group.futures if not fut.done()])

    def _finish(self, group: _Group, failures: list[tuple[Future[bytes], BaseException]]) -> None:
        for fut, exc in failures:
            if not fut.done():
                fut.set_exception(exc)
        with self._lock:
            for c, fut in zip(group.chunks, group.futures):
                key = (c.blob_index, c.compressed_offset)
                entry = self._inflight.get(key)
                if entry is not None and entry[0] is fut:
                    del self._inflight[key]
            if not self._inflight:
                self._quiet.notify_all()

    def _run_group(self, group: _Group) -> int:
        """Fetch, decode, verify, hand out and cache one group (runs on a pool worker)."""
        blob = group.blob
        start, end = group.start, group.end
        prefetch = group.priority != ON_DEMAND
        failures: list[tuple[Future[bytes], BaseException]] = []
        t0 = time.perf_counter()
        try:
            with plugin_errors(BackendError, f"backend '{self.backend_metrics.backend_type}' failed "
                               f"reading blob {blob.blob_id} at {start}+{end - start}"):
                raw = self.backend.read(blob.blob_id, start, end - start)
        except BaseException as exc:
            self.backend_metrics.record(0, time.perf_counter() - t0, error=True, prefetch=prefetch)
            self._finish(group, [(fut, exc) for fut in group.futures])
            return 0
        elapsed = time.perf_counter() - t0
        self.backend_metrics.record(len(raw), elapsed, prefetch=prefetch)
        if prefetch:
            self.cache_metrics.record_prefetch(len(raw), len(group.chunks), elapsed)
        good: list[tuple[ChunkInfo, bytes]] = []
        whole = len(group.chunks) == 1
        mv = memoryview(raw)
        for c, fut in zip(group.chunks, group.futures):
            lo = c.compressed_offset - start
            try:
                if lo + c.compressed_size > len(raw):
                    raise IntegrityError(
                        f"blob {blob.blob_id} chunk {c.index} (compressed offset {c.compressed_offset}): "
                        f"blob ends at {start + len(raw)}, before the chunk's end"
                    )
                with plugin_errors(IntegrityError, f"blob {blob.blob_id} chunk {c.index}: cannot decode"):
                    data = self._decode(raw if whole else mv[lo:lo + c.compressed_size], c, blob)
            except NydusError as exc:
                failures.append((fut, exc))
                continue
            fut.set_result(data)
            good.append((c, data))
        mv.release()
        for fut, exc in failures:
            fut.set_exception(exc)
        if good and blob.blob_cache is not None:
            try:
                blob.blob_cache.put_many(good)
            except NydusError as exc:  # readers have their bytes; the cache just missed them
                log.warning("%s", exc)
            except Exception as exc:  # OSError, or a cache plugin bug: the same, logged
                log.warning("cache write failed for blob %s: %s: %s", blob.blob_id, type(exc).__name__, exc)
        self._finish(group, [])
        return len(raw)

    def _decode(self, raw: bytes | memoryview, c: ChunkInfo, blob: BlobState) -> bytes:
        """Decompress and (when validating) verify one chunk."""
        return decode_chunk(raw, c, blob.compressor, blob.digester,  # type: ignore[arg-type]
                            validate=self.digest_validate, blob_id=blob.blob_id)

    # -- prefetch ---------------------------------------------------------------------------------

    def is_ready(self, chunk: ChunkInfo) -> bool:
        """Return whether ``chunk`` is cached."""
        return self.blobs[chunk.blob_index].is_ready(chunk)

    def fetch_async(self, chunks: Iterable[ChunkInfo], *, priority: int = PREFETCH,
                    max_request: int = 1 << 20) -> tuple[list[Future[Any]], int]:
        """Queue background fetches of the chunks that are neither cached nor in flight.

        Returns the pool futures (each resolves to the bytes fetched by its request) and the total
        compressed size queued.
        """
        futures: list[Future[Any]] = []
        queued = 0
        with self._lock:
            if self._closed:
                return [], 0
            items: list[tuple[ChunkInfo, Future[bytes]]] = []
            seen: set[tuple[int, int]] = set()
            for c in chunks:
                key = (c.blob_index, c.compressed_offset)
                if key in seen or key in self._inflight or self.blobs[c.blob_index].is_ready(c):
                    continue
                seen.add(key)
                items.append((c, Future()))
                queued += c.compressed_size
            for group in self._make_groups(items, priority, max(max_request, 1)):
                self._submit(group)
                futures.append(group.pool_future)  # type: ignore[arg-type]
        return futures, queued

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no fetch is in flight and the caches have made what was written durable
        (when they can tell: a blob cache's optional ``flush``); False on timeout."""
        with self._lock:
            if not self._quiet.wait_for(lambda: not self._inflight, timeout):
                return False
        return all(b.blob_cache is None or b.blob_cache.flush(timeout) is not False for b in self.blobs)

    # -- metrics and lifetime ---------------------------------------------------------------------

    def entries_count(self) -> int:
        """Return the number of ready chunks across the image's blob caches."""
        return sum((b.blob_cache.ready_count() or 0) if b.blob_cache is not None else 0 for b in self.blobs)

    def all_ready(self) -> bool:
        """Return whether every chunk of every blob is cached (when the cache can tell)."""
        for b in self.blobs:
            n = b.blob_cache.ready_count() if b.blob_cache is not None else None
            if n is None or not b.info.chunk_count or n < b.info.chunk_count:
                return False
        return True

    def metrics(self) -> dict[str, Any]:
        """Return every counter: backend, blobcache (upstream shapes) and user reads."""
        return {
            "backend": self.backend_metrics.snapshot(),
            "blobcache": self.cache_metrics.snapshot(entries_count=self.entries_count(),
                                                     data_all_ready=self.all_ready()),
            "reads": self.read_metrics.snapshot(),
        }

    def close(self) -> None:
        """Stop the workers and close the blob caches (the backend and cache policy stay open)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.pool.close()
        for b in self.blobs:
            if b.blob_cache is not None:
                try:
                    b.blob_cache.close()
                except OSError as exc:
                    log.warning("closing cache of blob %s: %s", b.blob_id, exc)

    def __enter__(self) -> ReadPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _with_id(info: BlobInfo, blob_id: str) -> BlobInfo:
    return dataclasses.replace(info, blob_id=blob_id)
