"""The read pipeline: (inode, offset, length) or (blob, offset, length) -> bytes, through the cache
and the backend.

For each chunk a read touches, the blob cache is asked first (a hit is a ``pread`` of the
uncompressed cache file, no decompression). Missing chunks of one blob that are adjacent in the
blob become one ranged backend request, extended with the blob's next chunks up to ``amplify_io``
bytes (upstream's user-IO amplification; 0 turns it off). A chunk being fetched is registered
in flight, so concurrent readers of it wait for that one fetch. Fetched bytes are decompressed by
the image's compressor plugin, verified by its digester plugin when ``digest_validate`` is set (a
mismatch is an :class:`~nydus_core.errors.IntegrityError` for the readers of that chunk only; bad
bytes are neither cached nor returned), handed to the waiting readers, then written to the cache,
which marks them ready only after the data is durable.

A reader runs one of its requests itself (no hand-off); the rest, and all prefetch requests, run on
a bounded :class:`~nydus_core.storage.pool.FetchPool` where on-demand requests go ahead of
prefetch. Everything here is synchronous and thread-safe. The hot path has no pluggy and no logging.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..errors import CacheError
from ..interfaces import Backend, CachePolicy
from ..rafs.image import RafsImage
from ..rafs.model import ChunkInfo
from .access_pattern import AccessPattern
from .blob_state import open_blob_states
from .blobids import resolve_blob_ids
from .chunk_order import CompressedOrder, UncompressedLayout
from .chunk_walk import fill, join, plan_range
from .dispatch import Dispatcher
from .fetch_group import FetchGroup
from .fetcher import GroupFetcher
from .file_index import FileChunks, FileIndex
from .inflight import InFlight
from .pool import ON_DEMAND, PREFETCH, FetchPool
from .read_ahead import ReadAhead
from .stats import PipelineMetrics

if TYPE_CHECKING:
    from .prefetch import TokenBucket

__all__ = ["MAX_USER_REQUEST", "ReadPipeline"]

#: Largest single backend request an on-demand read issues when amplify_io is smaller.
MAX_USER_REQUEST = 4 << 20

#: A read of (file or blob, offset, size, cached only) -> bytes (None: not all cached).
_RangeRead = Callable[[int, int, int, bool], "bytes | None"]


class ReadPipeline:
    """Serves reads of one image's files (and blob ranges) from a cache policy and a backend.

    ``blob_ids`` overrides the ids recorded in the image (see :mod:`.blobids`); by default they are
    resolved from the image and its bootstrap path. ``workers`` bounds concurrent backend requests.

    It puts together collaborators with one job each (internal modules of :mod:`nydus_core.storage`):

    - ``file_index.FileIndex``: inode -> size and chunk records, with an offset -> chunk lookup;
    - ``chunk_walk.plan_range``: the one chunk walk of every read (cache hits, holes, misses) and
      the assembly of the result;
    - ``inflight.InFlight``: in-flight dedup (and the planning lock);
    - ``read_ahead.ReadAhead``: which following chunks ride along with a miss (``amplify_io``);
    - ``chunk_order``: the blob-order indexes (compressed order for read-ahead, uncompressed layout
      for blob-range reads), compact and built lazily;
    - ``dispatch.Dispatcher``: grouping misses into ranged requests, running them inline or on the
      ``pool.FetchPool``, promoting prefetch work a reader waits for;
    - ``fetcher.GroupFetcher`` and ``decode.decode_group``: the backend request, decompression and
      verification;
    - ``blob_state.BlobState``: each blob's codecs and cache (cache reads and writes);
    - ``stats.PipelineMetrics``: the backend, blobcache and read counters.

    Public attributes (read-only): ``image``, ``backend``, ``cache``, ``chunk_size``,
    ``digest_validate``, ``amplify_io``, ``id``, ``access_pattern`` and ``prefetch_bucket`` (the
    token bucket the prefetchers of this pipeline share, see :mod:`.prefetch`).
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
        if self.digest_validate and cache is not None and not cache.validate:
            cache.validate = True  # chunks read back from the cache are verified too (docs/config.md)
        self.amplify_io = max(0, int(amplify_io))
        self.chunk_size = image.chunk_size
        self.id = id
        if blob_ids is None:
            blob_ids = resolve_blob_ids(image.blobs, bootstrap_path=getattr(image, "path", None))
        self._blobs = open_blob_states(image, cache, blob_ids)
        self._metrics = PipelineMetrics(getattr(backend, "name", type(backend).__name__), id,
                                        str(getattr(cache, "work_dir", "")) if cache else "")
        self._reads = self._metrics.reads
        self._cache_reads = self._metrics.cache
        for b in self._blobs:
            if b.blob_cache is not None and b.blob_cache.data_path:
                self._metrics.cache.underlying_files.add(b.blob_cache.data_path)
        self.prefetch_bucket: TokenBucket | None = None
        if isinstance(access_pattern, AccessPattern):
            self.access_pattern: AccessPattern | None = access_pattern
        else:
            self.access_pattern = AccessPattern() if access_pattern else None
        self._files = FileIndex(image)
        self._inflight = InFlight()
        self._order = CompressedOrder(image, enabled=cache is not None)
        self._layouts = UncompressedLayout(image)
        self._read_ahead = ReadAhead(self.amplify_io, self._order, self._inflight, self._blobs)
        fetcher = GroupFetcher(backend, self._metrics, self._inflight, digest_validate=self.digest_validate)
        self._dispatch = Dispatcher(FetchPool(workers), self._inflight, self._blobs, fetcher.run)

    # -- files ------------------------------------------------------------------------------------

    def file(self, ino: int) -> FileChunks:
        """Return the size and chunk records of regular file ``ino`` (decoded once, then kept)."""
        return self._files.get(ino)

    # -- reads ------------------------------------------------------------------------------------

    def read(self, ino: int, offset: int, size: int) -> bytes:
        """Return up to ``size`` bytes of file ``ino`` from ``offset`` (short only at end of file)."""
        if self.access_pattern is not None:
            self.access_pattern.record(ino)
        try:  # the hot path: _counted, without its indirection
            data = self._read_file(ino, offset, size, False)
        except BaseException:
            self._reads.record_error()
            raise
        assert data is not None  # a fetching read always has the bytes
        self._reads.record(size, len(data))
        return data

    def read_if_cached(self, ino: int, offset: int, size: int) -> bytes | None:
        """Like :meth:`read` when every chunk the read needs is in the local cache, else None.

        Never fetches or waits for a fetch: the fast path a frontend can run inline (one
        ``pread`` per chunk from the cache files). Without a cache it is always None.
        """
        data = self._counted_if_cached(self._read_file, ino, offset, size)
        if data is not None and self.access_pattern is not None:
            self.access_pattern.record(ino)
        return data

    def _counted(self, read: _RangeRead, key: int, offset: int, size: int) -> bytes:
        """Run a fetching ``read`` and count it in the read metrics (errors too)."""
        try:
            data = read(key, offset, size, False)
        except BaseException:
            self._reads.record_error()
            raise
        assert data is not None  # a fetching read always has the bytes
        self._metrics.reads.record(size, len(data))
        return data

    def _counted_if_cached(self, read: _RangeRead, key: int, offset: int, size: int) -> bytes | None:
        """Run ``read`` from the cache only; count it when it could be served."""
        if self.cache is None:
            return None
        data = read(key, offset, size, True)
        if data is not None:
            self._reads.record(size, len(data))
        return data

    def _read_file(self, ino: int, offset: int, size: int, cached_only: bool) -> bytes | None:
        f = self._files.get(ino)
        end = min(offset + size, f.size)
        if offset < 0 or size <= 0 or offset >= end:
            return b""
        chunks = f.chunks
        plan = plan_range(chunks, f.index_of(offset, self.chunk_size), offset, end, self._blobs, None,
                          cached_only)
        if plan is None:
            return None
        pieces, misses, hits = plan
        if misses:
            follow = chunks[misses[-1][4] + 1:] if self.amplify_io else ()
            fill(pieces, misses, self.fetch([m[1] for m in misses], follow=follow))
        if self.cache is not None:
            self._cache_reads.record_read(hits, len(misses))
        if len(pieces) == 1:  # join(pieces), inline: the hot path
            p = pieces[0]
            return p if type(p) is bytes else bytes(p)
        return b"".join(pieces)

    def read_blob(self, blob_index: int, offset: int, size: int) -> bytes:
        """Return up to ``size`` bytes at ``offset`` of blob ``blob_index``'s uncompressed layout.

        The layout is what the kernel's EROFS driver reads as the blob's device (and what the
        blobcache keeps in ``<blob id>.blob.data``): each chunk's uncompressed bytes at its
        ``uncompressed_offset``, zeros where no chunk is. Short only at the layout's end (the
        blob's ``uncompressed_size``, else the end of its last chunk). Chunks go through the same
        cache, merged and deduplicated fetches, read-ahead and verification as file reads.
        """
        return self._counted(self._read_blob, blob_index, offset, size)

    def read_blob_if_cached(self, blob_index: int, offset: int, size: int) -> bytes | None:
        """Like :meth:`read_blob` when every chunk of the range is cached, else None (no fetch)."""
        return self._counted_if_cached(self._read_blob, blob_index, offset, size)

    def blob_size(self, blob_index: int) -> int:
        """Return the size of blob ``blob_index``'s uncompressed layout (see :meth:`read_blob`)."""
        recorded = self.image.blobs[blob_index].uncompressed_size
        return max(recorded, self._layouts.get(blob_index).end)

    def blob_id(self, blob_index: int) -> str:
        """Return the id blob ``blob_index`` is fetched and cached by (after any override)."""
        return self._blobs[blob_index].blob_id

    def complete_blob_file(self, blob_index: int) -> str | None:
        """Return the cache file that holds blob ``blob_index``'s whole uncompressed layout (the
        :meth:`read_blob` bytes), or None when some chunk is missing from it.

        With ``digest_validate`` every chunk's bytes in the file are read and checked against their
        digest first (None on any mismatch). The caller that uses the file directly must keep the
        cache from changing it (a shared ``flock`` on it stops the blobcache's hole punching and gc).
        """
        b = self._blobs[blob_index]
        bc = b.blob_cache
        if bc is None or not bc.data_path or not b.all_ready():
            return None
        layout = self._layouts.get(blob_index)
        chunks = list(layout.iter_from(0, len(layout)))
        if not all(bc.is_ready(c) for c in chunks):
            return None
        if self.digest_validate:
            try:
                fd = os.open(bc.data_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            try:
                for c in chunks:
                    data = os.pread(fd, c.uncompressed_size, c.uncompressed_offset)
                    if b.digester.digest(data) != c.block_id:
                        return None
            finally:
                os.close(fd)
        return bc.data_path

    def _read_blob(self, blob_index: int, offset: int, size: int, cached_only: bool) -> bytes | None:
        layout = self._layouts.get(blob_index)
        end = min(offset + size, max(self.image.blobs[blob_index].uncompressed_size, layout.end))
        if offset < 0 or size <= 0 or offset >= end:
            return b""
        plan = plan_range(layout, layout.covering(offset), offset, end, self._blobs, layout.keys,
                          cached_only)
        if plan is None:
            return None
        pieces, misses, hits = plan
        if misses:
            follow = layout.iter_from(misses[-1][4] + 1, 1024) if self.amplify_io else ()
            fill(pieces, misses, self.fetch([m[1] for m in misses], follow=follow))
        if self.cache is not None:
            self._cache_reads.record_read(hits, len(misses))
        return join(pieces)

    # -- fetching ---------------------------------------------------------------------------------

    def fetch(self, chunks: Sequence[ChunkInfo], *, follow: Iterable[ChunkInfo] = ()) -> list[bytes]:
        """Return the uncompressed bytes of every chunk in ``chunks`` (an on-demand fetch).

        Ready chunks come from the cache, chunks in flight are waited for, the rest are fetched
        in merged requests; ``follow`` are the chunks after the last one in file order, used for
        read-ahead up to ``amplify_io``.
        """
        inline: FetchGroup | None = None
        inflight = self._inflight
        with inflight.lock:
            if inflight.closed:  # before anything is registered in flight
                raise CacheError("read after the image was closed")
            futures, mine, promote = inflight.claim(chunks, self._blobs)
            if mine:
                extra = self._read_ahead.extend(mine, follow)
                groups = self._dispatch.make_groups(mine + extra, ON_DEMAND,
                                                    max(self.amplify_io, MAX_USER_REQUEST))
                inline = self._dispatch.take_inline(groups)
                for group in groups:
                    self._dispatch.submit(group)
        if inline is not None:
            self._dispatch.run_inline(inline)
        if promote:
            self._dispatch.promote(promote)
        return [self._from_cache(c) if f is None else f.result()
                for c, f in zip(chunks, futures, strict=True)]

    def _from_cache(self, c: ChunkInfo) -> bytes:
        data = self._blobs[c.blob_index].read_cached(c, 0, c.uncompressed_size)
        if data is None:  # evicted meanwhile: fetch it again
            return self.fetch([c])[0]
        return data

    def load_blob_order(self) -> bool:
        """Build the blob-order index now (normally built in the background on the first miss);
        return whether cross-file read-ahead is available."""
        return self._order.load()

    # -- prefetch ---------------------------------------------------------------------------------

    def is_ready(self, chunk: ChunkInfo) -> bool:
        """Return whether ``chunk`` is cached."""
        return self._blobs[chunk.blob_index].is_ready(chunk)

    def fetch_async(self, chunks: Iterable[ChunkInfo], *, priority: int = PREFETCH,
                    max_request: int = 1 << 20) -> tuple[list[Future[Any]], int]:
        """Queue background fetches of the chunks that are neither cached nor in flight.

        Returns the pool futures (each resolves to the bytes fetched by its request) and the total
        compressed size queued.
        """
        inflight = self._inflight
        with inflight.lock:
            if inflight.closed:
                return [], 0
            items = inflight.unclaimed(chunks, self._blobs)
            groups = self._dispatch.make_groups(items, priority, max(max_request, 1))
            futures = [self._dispatch.submit(group) for group in groups]
        queued = sum(c.compressed_size for c, _fut in items)
        return futures, queued

    def prefetch_started(self, workers: int) -> None:
        """Note in the blobcache metrics that prefetch began with ``workers`` threads."""
        self._metrics.cache.prefetch_started(workers)

    def prefetch_finished(self) -> None:
        """Note in the blobcache metrics that prefetch ended."""
        self._metrics.cache.prefetch_finished()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no fetch is in flight and the caches have made what was written durable
        (when they can tell: a blob cache's optional ``flush``); False on timeout."""
        if not self._inflight.wait_idle(timeout):
            return False
        return all(b.flush(timeout) for b in self._blobs)

    # -- metrics and lifetime ---------------------------------------------------------------------

    def set_id(self, id: str) -> None:
        """Name this pipeline in its metrics (nydusd uses the mountpoint, as upstream does)."""
        self.id = id
        self._metrics.set_id(id)

    def entries_count(self) -> int:
        """Return the number of ready chunks across the image's blob caches."""
        return sum(b.ready_count() or 0 for b in self._blobs)

    def all_ready(self) -> bool:
        """Return whether every chunk of every blob is cached (when the cache can tell)."""
        return all(b.all_ready() for b in self._blobs)

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Return every counter: ``backend``, ``blobcache`` (upstream's shapes) and user ``reads``."""
        return self._metrics.snapshot(entries_count=self.entries_count(), data_all_ready=self.all_ready())

    def close(self) -> None:
        """Stop the workers and close the blob caches (the backend and cache policy stay open)."""
        with self._inflight.lock:
            if self._inflight.closed:
                return
            self._inflight.closed = True
        self._dispatch.close()
        for b in self._blobs:
            b.close()

    def __enter__(self) -> ReadPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
