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
from nydus_core.errors import UsageError
from nydus_core.rafs.image import RafsImage
from nydus_core.redact import masked, redact
from nydus_core.storage import ReadPipeline

from .inodeset import InodeSet
from .metrics import FsMetrics

if TYPE_CHECKING:
    from nydus_core.fs import RafsFS

log = logging.getLogger("nydusd")


class RafsInstance:
    """A mounted RAFS image: what the FUSE operations and the HTTP API need of it."""

    def __init__(self, bootstrap: str, config: NydusConfig, fs: RafsFS, *,
                 prefetch_files: Sequence[str] = ()) -> None:
        if fs.pipeline is None:
            raise ValueError("a RAFS instance needs a read pipeline")
        self.bootstrap = bootstrap
        self.config = config
        self.fs = fs
        self.image: RafsImage = fs.image
        self.pipeline: ReadPipeline = fs.pipeline
        self.prefetch_files = list(prefetch_files)
        image = self.image
        self.root_ino = image.root_ino
        self.enable_xattr = bool(config.enable_xattr)
        self.slot = -1
        self.mountpoint = ""
        self.retired = False
        self.refs = 0  # kernel lookup count over all inodes of this instance
        self.open_handles = 0
        self.opened: dict[int, int] = {}  # image inode -> open file handles
        self.stored = InodeSet()  # inodes pushed whole into the kernel page cache
        self.mounted_time = time.time()
        self.metrics = FsMetrics("", files=config.iostats_files, access_pattern=config.access_pattern,
                                 latest_read_files=config.latest_read_files)
        self.track_names = bool(config.access_pattern)
        self._names: dict[int, tuple[int, bytes]] = {}
        self._closed = False

    # -- identity -------------------------------------------------------------------------------

    def describe(self) -> str:
        """Name the instance in log lines: mountpoint and bootstrap."""
        return f"{self.mountpoint or '?'} ({self.bootstrap})"

    def attach_id(self) -> None:
        """Use the mountpoint as the metrics id (upstream keys metrics by mountpoint)."""
        self.metrics.id = self.mountpoint
        self.pipeline.set_id(self.mountpoint)

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
        return self.pipeline.read_if_cached(ino, offset, size)

    # -- prefetch -------------------------------------------------------------------------------

    def stop_prefetch(self) -> None:
        """Stop background prefetching (it started with the instance)."""
        pf = self.fs.prefetcher
        if pf is not None:
            try:
                pf.stop()
            except Exception as exc:  # stopping must not prevent unmounting
                log.warning("%s: stopping prefetch: %s", self.describe(), exc)

    # -- API views ------------------------------------------------------------------------------

    def backend_metrics(self) -> dict[str, Any]:
        """Return ``/api/v1/metrics/backend`` for this instance."""
        return self.pipeline.metrics()["backend"]

    def blobcache_metrics(self) -> dict[str, Any]:
        """Return ``/api/v1/metrics/blobcache`` for this instance."""
        return self.pipeline.metrics()["blobcache"]

    def describe_json(self) -> dict[str, Any]:
        """Return the ``backend_collection`` entry of ``GET /api/v1/daemon``."""
        cfg = masked(self.config.to_v1_dict())
        return {
            "backend_type": "rafs",
            "mountpoint": self.mountpoint,
            "source": redact(self.bootstrap),
            "mounted_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.mounted_time)),
            "prefetch_files": self.prefetch_files,
            "config": cfg,
            # beyond upstream: how much of the image's data has been fetched so far
            "blobs_size": sum(b.compressed_size for b in self.image.blobs),
            "fetched": self.pipeline.metrics()["backend"].get("read_amount_total", 0),
        }

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop prefetch, close the pipeline, cache, backend and image (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.fs.close()
        except Exception as exc:
            log.warning("%s: closing: %s", self.describe(), exc)


def open_instance(
    bootstrap: str,
    config: NydusConfig,
    *,
    prefetch_files: Sequence[str] = (),
    workers: int | None = None,
) -> RafsInstance:
    """Open ``bootstrap`` with ``config`` through the library API (:func:`nydus_core.fs.open_fs`:
    backend, cache, read pipeline and the prefetcher the config or ``prefetch_files`` ask for);
    raise NydusError on any problem."""
    from nydus_core.fs import open_fs

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
        fs = open_fs(path, config, prefetch_files=list(prefetch_files) or None, workers=workers)
    except OSError as exc:
        raise UsageError(f"{bootstrap}: {exc.strerror or exc}") from None
    try:
        return RafsInstance(path, config, fs, prefetch_files=prefetch_files)
    except BaseException:
        fs.close()
        raise
