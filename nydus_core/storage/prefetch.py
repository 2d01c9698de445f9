"""Prefetching: what to fetch ahead, at what rate, without getting in the way of user reads.

:class:`PrefetchRunner` turns an ordered list of inodes (files, or directories expanded depth-first)
into batches of uncached chunks of about ``merging_size`` compressed bytes, pays for each batch
with a :class:`TokenBucket` (``bandwidth_rate`` bytes/s, 0 = unlimited), and queues it on the
pipeline at prefetch priority, keeping at most ``threads_count`` requests outstanding. The pool
runs user reads first and always keeps one worker for them; a user read that needs a chunk a
queued prefetch request holds promotes that request.

:class:`BasePrefetcher` is what prefetcher plugins subclass: they only say which inodes, in which
order (:meth:`BasePrefetcher.targets`). With ``prefetch_all`` (upstream's default) the rest of the
image follows the plugin's own list.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any

from ..config.model import PrefetchConfig
from ..errors import DuplicatePluginError, NydusError, UnknownPluginError
from ..interfaces import Prefetcher, PrefetchRequest
from ..plugins import FIRST_PARTY, registry
from ..rafs.image import RafsImage
from ..rafs.model import ChunkInfo
from .pipeline import ReadPipeline
from .pool import PREFETCH

__all__ = ["DEFAULTS", "BasePrefetcher", "PrefetchRunner", "TokenBucket", "choose_prefetcher",
           "prefetch_settings", "resolve_hints", "shared_bucket"]

log = logging.getLogger(__name__)

#: Upstream's ``fs_prefetch`` defaults.
DEFAULTS: dict[str, Any] = {k: v for k, v in dataclasses.asdict(PrefetchConfig()).items()
                            if k != "stream_prefetch"}


def prefetch_settings(config: Mapping[str, Any] | Any) -> dict[str, Any]:
    """Return ``fs_prefetch`` settings as a dict with defaults, from a mapping or a config object."""
    out = dict(DEFAULTS)
    if isinstance(config, Mapping):
        out.update({k: v for k, v in config.items() if k in DEFAULTS})
    elif config is not None:
        out.update({k: getattr(config, k) for k in DEFAULTS if hasattr(config, k)})
    out["threads_count"] = max(1, int(out["threads_count"]))
    out["merging_size"] = max(1, int(out["merging_size"]))
    out["bandwidth_rate"] = max(0, int(out["bandwidth_rate"]))
    return out


def choose_prefetcher(request: PrefetchRequest, name: str | None = None) -> type[Prefetcher] | None:
    """Return the prefetcher class for ``request``, chosen through the plugin registry.

    ``name`` (the library's ``prefetcher=``) picks one by name. Otherwise nothing prefetches unless
    the request asks for it (``enable`` or ``hints``, as upstream), and the installed prefetcher
    whose :meth:`~nydus_core.interfaces.Prefetcher.applies` ranks the request highest is used: with
    the first-party plugins, ``files`` for ``--prefetch-files`` hints, ``table`` for
    ``fs_prefetch.enable``. Two at the top rank is a :class:`DuplicatePluginError` naming both; none
    at all an :class:`UnknownPluginError` naming the first-party distributions.
    """
    reg = registry("prefetcher")
    if name:
        cls: type[Prefetcher] = reg.get(name, where="for prefetch")
        return cls
    if not (request.enable or request.hints):
        return None
    ranked: list[tuple[int, str, type[Prefetcher]]] = []
    for key, cls in reg.items():
        if key != cls.name:  # an alias of a class listed under its name
            continue
        rank = cls.applies(request)
        if rank is not None:
            ranked.append((rank, key, cls))
    asked = "--prefetch-files" if request.hints else "fs_prefetch.enable"
    if not ranked:
        dists = sorted({d for (kind, _n), d in FIRST_PARTY.items() if kind == "prefetcher"})
        installed = ", ".join(reg.names()) or "none"
        raise UnknownPluginError(f"no installed prefetcher handles {asked}. Installed prefetchers: "
                                 f"{installed}. The first-party ones come with: {', '.join(dists)}")
    ranked.sort(key=lambda r: r[0], reverse=True)
    top = [r for r in ranked if r[0] == ranked[0][0]]
    if len(top) > 1:
        names = " and ".join(f"'{r[1]}' ({reg.provider(r[1])})" for r in top)
        raise DuplicatePluginError(f"prefetchers {names} both claim {asked} at rank {top[0][0]}; "
                                   "disable one with NYDUS_DISABLE_PLUGINS")
    return top[0][2]


class TokenBucket:
    """Paces byte transfers to ``rate`` bytes/s: :meth:`acquire` returns once the bytes' time slot
    has passed (pay first, then go), so a transfer of N bytes never finishes before N / rate s."""

    def __init__(self, rate: int, *, stop: threading.Event | None = None) -> None:
        self.rate = rate
        self._stop = stop or threading.Event()
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def acquire(self, n: int, stop: threading.Event | None = None) -> bool:
        """Wait for ``n`` bytes' worth of time; False if stopped (``stop`` or the bucket's own)."""
        stop = stop or self._stop
        if self.rate <= 0 or n <= 0:
            return not stop.is_set()
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.rate
            until = self._next
        delay = until - time.monotonic()
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()

    def refund(self, n: int) -> None:
        """Give back time paid for ``n`` bytes that were not transferred after all."""
        if self.rate <= 0 or n <= 0:
            return
        with self._lock:
            self._next = max(time.monotonic(), self._next - n / self.rate)


_buckets_lock = threading.Lock()


def shared_bucket(pipeline: ReadPipeline, rate: int) -> TokenBucket:
    """Return the token bucket of ``pipeline`` (created with ``rate`` by the first prefetcher), so
    that every prefetcher of one pipeline shares the bandwidth limit."""
    with _buckets_lock:
        if pipeline.prefetch_bucket is None:
            pipeline.prefetch_bucket = TokenBucket(rate)
        return pipeline.prefetch_bucket


class PrefetchRunner:
    """Fetches the chunks of a list of inodes in the background (see the module docstring)."""

    def __init__(self, image: RafsImage, pipeline: ReadPipeline, *, threads_count: int = 8,
                 merging_size: int = 1 << 20, bandwidth_rate: int = 0,
                 stop: threading.Event | None = None) -> None:
        self.image = image
        self.pipeline = pipeline
        self.threads = max(1, threads_count)
        self.merging_size = max(1, merging_size)
        self.stop = stop or threading.Event()
        rate = bandwidth_rate
        if 0 < rate < image.chunk_size:
            rate = image.chunk_size  # upstream raises a too-small rate to one chunk per second
        # one budget per pipeline: prefetchers running side by side share bandwidth_rate
        self.bucket = shared_bucket(pipeline, rate)
        self._seen_inodes: set[int] = set()
        self._seen_chunks: set[tuple[int, int]] = set()
        self._window: deque[Future[Any]] = deque()
        self.bytes_queued = 0
        self.errors = 0

    def files(self, inodes: Iterable[int]) -> Iterator[int]:
        """Yield regular files of ``inodes`` in order, directories expanded depth-first, each once."""
        image = self.image
        for ino in inodes:
            if self.stop.is_set():
                return
            if ino in self._seen_inodes:
                continue
            try:
                attrs = image.getattr(ino)
            except (NydusError, OSError) as exc:
                log.warning("prefetch: skipping inode %d: %s", ino, exc)
                continue
            if attrs.is_dir:
                for _path, child in image.walk(ino):
                    if child not in self._seen_inodes and image.getattr(child).is_reg:
                        self._seen_inodes.add(child)
                        yield child
                self._seen_inodes.add(ino)
            elif attrs.is_reg:
                self._seen_inodes.add(ino)
                yield ino

    def run(self, inodes: Iterable[int]) -> None:
        """Prefetch the files of ``inodes`` (blocks until queued work is done or stop is set)."""
        batch: list[ChunkInfo] = []
        size = 0
        pipeline = self.pipeline
        for ino in self.files(inodes):
            try:
                chunks = pipeline.file(ino).chunks
            except (NydusError, OSError) as exc:
                log.warning("prefetch: skipping inode %d: %s", ino, exc)
                continue
            for c in chunks:
                key = (c.blob_index, c.compressed_offset)
                if key in self._seen_chunks:
                    continue
                self._seen_chunks.add(key)
                if pipeline.is_ready(c):
                    continue
                batch.append(c)
                size += c.compressed_size
                if size >= self.merging_size:
                    if not self._issue(batch, size):
                        return
                    batch, size = [], 0
        if batch and not self._issue(batch, size):
            return
        while self._window and not self.stop.is_set():
            self._wait_one()

    def _issue(self, batch: list[ChunkInfo], size: int) -> bool:
        if not self.bucket.acquire(size, self.stop):
            return False
        futures, queued = self.pipeline.fetch_async(batch, priority=PREFETCH, max_request=self.merging_size)
        self.bucket.refund(size - queued)
        self.bytes_queued += queued
        self._window.extend(futures)
        while len(self._window) > self.threads:
            self._wait_one()
        return not self.stop.is_set()

    def _wait_one(self) -> None:
        fut = self._window.popleft()
        try:
            fut.result()
        except BaseException as exc:  # a prefetch failure is not the user's error
            self.errors += 1
            log.warning("prefetch request failed: %s", exc)


class BasePrefetcher(Prefetcher):
    """A prefetcher plugin: subclasses implement :meth:`targets`; this class runs them in a thread.

    ``config`` holds ``fs_prefetch`` keys (``threads_count``, ``merging_size``, ``bandwidth_rate``,
    ``prefetch_all``). After :meth:`targets`, the whole image follows when ``prefetch_all`` is set,
    so a host starts one prefetcher per image (:func:`choose_prefetcher`). Prefetchers started on
    the same pipeline share one ``bandwidth_rate`` budget and never fetch a chunk twice.

    Public attributes: ``done`` (an event set when prefetching has ended; see :meth:`wait`) and
    ``runner`` (the :class:`PrefetchRunner` once started: ``bytes_queued``, ``errors``).
    """

    name = "base"
    #: True when :meth:`targets` already covers the whole image (skips the ``prefetch_all`` pass).
    covers_all = False

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(prefetch_settings(config or {}))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runner: PrefetchRunner | None = None
        self.done = threading.Event()

    def targets(self, image: RafsImage, hints: Iterable[str]) -> Iterable[int]:
        """Return the inodes to prefetch, in order (directories are expanded)."""
        raise NotImplementedError

    def start(self, image: RafsImage, pipeline: ReadPipeline, hints: Iterable[str] = ()) -> None:
        """Start prefetching in a background thread."""
        hints = list(hints)
        cfg = self.config
        self.runner = PrefetchRunner(image, pipeline, threads_count=cfg["threads_count"],
                                     merging_size=cfg["merging_size"],
                                     bandwidth_rate=cfg["bandwidth_rate"], stop=self._stop)

        def work() -> None:
            pipeline.prefetch_started(cfg["threads_count"])
            try:
                assert self.runner is not None
                self.runner.run(self.targets(image, hints))
                if cfg["prefetch_all"] and not self.covers_all and not self._stop.is_set():
                    self.runner.run(ino for _path, ino in image.walk())
            except Exception as exc:  # never kill the host process from a background thread
                log.warning("prefetch stopped: %s", exc)
            finally:
                pipeline.prefetch_finished()
                self.done.set()

        self._thread = threading.Thread(target=work, name=f"nydus-prefetch-{self.name}", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until prefetching has finished; False on timeout."""
        return self.done.wait(timeout)

    def stop(self) -> None:
        """Stop issuing prefetch requests and wait for the thread to end."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


def resolve_hints(image: RafsImage, hints: Iterable[str]) -> list[int]:
    """Return the inodes of the absolute paths in ``hints`` (missing paths are logged and skipped,
    as upstream does with ``--prefetch-files``)."""
    out: list[int] = []
    for hint in hints:
        path = hint.strip()
        if not path:
            continue
        try:
            out.append(image.resolve(path if path.startswith("/") else "/" + path))
        except (OSError, NydusError) as exc:
            log.warning("prefetch: %s: %s", path, (exc.strerror if isinstance(exc, OSError) else None) or exc)
    return out

