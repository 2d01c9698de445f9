"""One RAFS image served by the daemon: bootstrap, config, read pipeline, prefetch and metrics.

:func:`open_instance` does everything that can fail (bootstrap, backend and cache plugins, the
image's compressor and digester plugins) before the instance is attached to the filesystem, so a bad
config or image is a one-line error and never a half-mounted daemon.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nydus_core.config import NydusConfig
from nydus_core.errors import NydusError, UsageError
from nydus_core.rafs.image import RafsImage, open_image
from nydus_core.storage.pipeline import ReadPipeline

from .metrics import FsMetrics
from .prefetch import plan_prefetch

if TYPE_CHECKING:
    from nydus_core.interfaces import Backend, CachePolicy

log = logging.getLogger("nydusd")


class RafsInstance:
    """A mounted RAFS image: what the FUSE operations and the HTTP API need of it."""

    def __init__(
        self,
        bootstrap: str,
        config: NydusConfig,
        image: RafsImage,
        pipeline: ReadPipeline,
        backend: Backend,
        cache: CachePolicy | None,
        *,
        prefetch_files: Sequence[str] = (),
        prefetch_plan: Sequence[tuple[type[Any], list[str]]] = (),
    ) -> None:
        self.bootstrap = bootstrap
        self.config = config
        self.image = image
        self.pipeline = pipeline
        self.backend = backend
        self.cache = cache
        self.prefetch_files = list(prefetch_files)
        self.prefetch_plan = list(prefetch_plan)
        self.root_ino = image.root_ino
        self.enable_xattr = bool(config.enable_xattr)
        self.slot = -1
        self.mountpoint = ""
        self.retired = False
        self.refs = 0  # kernel lookup count over all inodes of this instance
        self.open_handles = 0
        self.opened: dict[int, int] = {}  # image inode -> open file handles
        self.stored: set[int] = set()  # inodes pushed whole into the kernel page cache
        self.mounted_time = time.time()
        self.metrics = FsMetrics("", files=config.iostats_files, access_pattern=config.access_pattern,
                                 latest_read_files=config.latest_read_files)
        self.track_names = bool(config.access_pattern)
        self._names: dict[int, tuple[int, bytes]] = {}
        self._prefetchers: list[Any] = []
        self._closed = False
        self._chunk_size = image.chunk_size
        self._blobs = pipeline.blobs

    # -- identity -------------------------------------------------------------------------------

    def describe(self) -> str:
        """Name the instance in log lines: mountpoint and bootstrap."""
        return f"{self.mountpoint or '?'} ({self.bootstrap})"

    def attach_id(self) -> None:
        """Use the mountpoint as the metrics id (upstream keys metrics by mountpoint)."""
        self.metrics.id = self.mountpoint
        self.pipeline.id = self.mountpoint
        self.pipeline.backend_metrics.id = self.mountpoint
        self.pipeline.cache_metrics.id = self.mountpoint

    # -- metadata helpers -----------------------------------------------------------------------

    def xattrs(self, ino: int) -> dict[bytes, bytes]:
        """Return the extended attributes of ``ino`` (empty when it has none)."""
        if not self.image.getattr(ino).has_xattr:
            return {}
        return self.image.xattrs(ino)

    def note_name(self, ino: int, parent: int, name: bytes) -> None:
        """Remember where ``ino`` was found (paths for the access pattern)."""
        if ino not in self._names:
            self._names[ino] = (parent, name)

    def parent_of(self, ino: int) -> int | None:
        """Return the parent directory of ``ino`` when known."""
        p = self.image.parent(ino)
        if p is not None:
            return p
        rec = self._names.get(ino)
        return rec[0] if rec else None

    def path_of(self, ino: int) -> str:
        """Return the path of ``ino`` inside the image, as far as lookups have shown it."""
        parts: list[bytes] = []
        seen = 0
        while ino != self.root_ino and seen < 4096:
            rec = self._names.get(ino)
            if rec is None:
                return ""
            ino, name = rec
            parts.append(name)
            seen += 1
        return "/" + os.fsdecode(b"/".join(reversed(parts)))

    def data_size(self) -> int:
        """Return the uncompressed data size of the image's blobs (for statfs)."""
        return sum(b.uncompressed_size or b.compressed_size for b in self.image.blobs)

    # -- data -----------------------------------------------------------------------------------

    def read(self, ino: int, offset: int, size: int) -> bytes:
        """Read file data through the pipeline (blocking: called on a worker thread)."""
        return self.pipeline.read(ino, offset, size)

    def read_cached(self, ino: int, offset: int, size: int) -> bytes | None:
        """Return the data if every chunk it needs is in the local cache, else None (no waiting).

        This is the inline fast path: ``pread`` from the cache files on the calling thread."""
        p = self.pipeline
        if p.cache is None:
            return None
        f = p.file(ino)
        end = min(offset + size, f.size)
        if offset >= end:
            return b""
        chunks = f.chunks
        n = len(chunks)
        i = f.index_of(offset, self._chunk_size)
        blobs = self._blobs
        pieces: list[bytes] = []
        pos = offset
        while pos < end:
            if i >= n:
                return None
            c = chunks[i]
            start = pos - c.file_offset
            if start < 0:
                return None  # a hole: the pipeline fills it
            stop = min(end - c.file_offset, c.uncompressed_size)
            if stop <= start:
                return None
            data = blobs[c.blob_index].cached(c, start, stop - start)
            if data is None:
                return None
            pieces.append(data)
            pos = c.file_offset + stop
            i += 1
        out = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        p.read_metrics.record(size, len(out))
        p.cache_metrics.record_read(len(pieces), 0)
        return out

    # -- prefetch -------------------------------------------------------------------------------

    def start_prefetch(self) -> None:
        """Start the prefetchers the config asks for (and ``--prefetch-files``)."""
        from .prefetch import start_prefetchers

        self._prefetchers = start_prefetchers(self)

    def stop_prefetch(self) -> None:
        """Stop background prefetching."""
        for p in self._prefetchers:
            try:
                p.stop()
            except Exception as exc:  # stopping must not prevent unmounting
                log.warning("%s: stopping prefetch: %s", self.describe(), exc)
        self._prefetchers = []

    # -- API views ------------------------------------------------------------------------------

    def backend_metrics(self) -> dict[str, Any]:
        """Return ``/api/v1/metrics/backend`` for this instance."""
        return self.pipeline.backend_metrics.snapshot()

    def blobcache_metrics(self) -> dict[str, Any]:
        """Return ``/api/v1/metrics/blobcache`` for this instance."""
        p = self.pipeline
        return p.cache_metrics.snapshot(entries_count=p.entries_count(), data_all_ready=p.all_ready())

    def describe_json(self) -> dict[str, Any]:
        """Return the ``backend_collection`` entry of ``GET /api/v1/daemon``."""
        cfg = self.config.to_v1_dict()
        backend = cfg.get("device", {}).get("backend", {}).get("config", {})
        for key in list(backend):
            if key in ("auth", "registry_token", "access_key_id", "access_key_secret"):
                backend[key] = "***"
        return {
            "backend_type": "rafs",
            "mountpoint": self.mountpoint,
            "source": self.bootstrap,
            "mounted_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.mounted_time)),
            "prefetch_files": self.prefetch_files,
            "config": cfg,
        }

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop prefetch, close the pipeline, backend, cache and image (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.stop_prefetch()
        for what, fn in (("pipeline", self.pipeline.close), ("cache", getattr(self.cache, "close", None)),
                         ("backend", self.backend.close), ("image", self.image.close)):
            if fn is None:
                continue
            try:
                fn()
            except Exception as exc:
                log.warning("%s: closing %s: %s", self.describe(), what, exc)


def open_instance(
    bootstrap: str,
    config: NydusConfig,
    *,
    prefetch_files: Sequence[str] = (),
    workers: int | None = None,
) -> RafsInstance:
    """Open ``bootstrap`` with ``config`` and build its read pipeline; raise NydusError on any problem."""
    path = os.path.abspath(bootstrap)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{bootstrap}: bootstrap file not found") from None
    except OSError as exc:
        raise UsageError(f"{bootstrap}: cannot access bootstrap: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{bootstrap}: bootstrap is not a regular file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"{bootstrap}: cannot read bootstrap: {exc.strerror}") from None
    plan = plan_prefetch(config, prefetch_files)
    image = open_image(path)
    backend = cache = pipeline = None
    try:
        backend = config.require_backend().create()
        cache = config.cache.create() if config.cache is not None else None
        kwargs: dict[str, Any] = {}
        if workers is not None:
            kwargs["workers"] = workers
        pipeline = ReadPipeline(image, backend, cache, digest_validate=config.digest_validate,
                                amplify_io=config.amplify_io, **kwargs)
        return RafsInstance(path, config, image, pipeline, backend, cache, prefetch_files=prefetch_files,
                            prefetch_plan=plan)
    except BaseException as exc:
        for obj in (pipeline, cache, backend, image):
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    pass
        if isinstance(exc, NydusError | KeyboardInterrupt):
            raise
        if isinstance(exc, OSError):
            raise UsageError(f"{bootstrap}: {exc}") from exc
        raise
