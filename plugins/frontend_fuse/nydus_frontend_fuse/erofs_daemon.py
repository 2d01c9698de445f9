"""nydusd with ``--fs-driver erofs``: the kernel's EROFS driver serves the image, the daemon only
blob data.

:class:`ErofsDaemon` shares :class:`~.daemon.Daemon`'s preparation, API and mount bookkeeping
and replaces the FUSE mount of the image with:

1. a private blob-device filesystem (:mod:`.blobdevfs`, served by the project's own
   :class:`~.fuse_session.FuseSession`) mounted on a directory under ``/run/nydusd``;
2. per image, a file-backed EROFS mount (:func:`~.erofs_mount.mount_erofs`) of the local bootstrap
   with one blob-device file per blob, in blob-table order, at ``-M`` (an image mounted through the
   API at ``/sub`` goes to ``-M``/sub; without an image at ``/`` a small tmpfs at ``-M`` holds
   those directories, as fusedev's pseudo-directories do). A blob shared by several images is one
   device file, so it is fetched and cached once.

A blob whose cache file ``<blob_id>.blob.data`` is complete (every chunk ready; under
``digest_validate`` every chunk checked against its digest at mount time) is its own device: the
kernel reads it with no FUSE round trip. The daemon holds a shared ``flock`` on it while mounted,
which keeps the blobcache's size-cap eviction (hole punching) and ``nydus cache gc`` away from it.

Before the kernel sees a bootstrap it must be RAFS v6 and pass the structural checks of
``nydus-image check`` (every inode, name, link, xattr and chunk record decoded and bounds-checked):
a bootstrap from a registry is untrusted input to the kernel. Unmounting goes EROFS first, then
the blob devices; a reaper process (:mod:`.erofs_reaper`) removes the mounts if the daemon dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from nydus_core.errors import NydusError, UsageError
from nydus_core.mounts import mounts_at
from nydus_core.tools.check import check_image

from . import __version__
from .blobdevfs import BlobDevice, BlobDeviceFs
from .daemon import Daemon, FuseTuning
from .erofs_mount import FUSEDEV_HINT, erofs_unavailable, mount_erofs, mount_id, mount_tmpfs
from .erofs_reaper import Reaper
from .fuse_session import FuseSession, abort_connection, connection_id, mount_fuse, umount
from .instance import RafsInstance, open_instance
from .vfs import Vfs

__all__ = ["ErofsDaemon", "KernelMount", "check_bootstrap"]

log = logging.getLogger("nydusd")

#: where the blob-device filesystems are mounted (falls back to the temp dir)
RUN_DIR = "/run/nydusd"
#: seconds between checks that our EROFS mount is still there (an external umount ends the daemon)
WATCH_INTERVAL = 1.0


@dataclass
class KernelMount:
    """One EROFS mount made by the daemon."""

    target: str
    instance: RafsInstance
    #: the blob devices it uses (the blobs served through FUSE)
    devices: list[BlobDevice]
    mount_id: int
    #: descriptors holding a shared flock on the cache files used directly as devices
    pins: list[int] = field(default_factory=list)
    #: ids of the blobs whose complete cache file is the device
    direct_ids: list[str] = field(default_factory=list)


def check_bootstrap(inst: RafsInstance) -> None:
    """Refuse a bootstrap the kernel must not parse: RAFS v5, or one failing ``nydus-image check``'s
    structural checks. One-line UsageError/NydusError naming the file."""
    if inst.image.version != 6:
        raise UsageError(f"{inst.bootstrap}: RAFS v{inst.image.version} bootstrap is not EROFS; the "
                         f"erofs driver needs RAFS v6 ({FUSEDEV_HINT})")
    try:
        check_image(inst.bootstrap)
    except NydusError as exc:
        raise UsageError(f"{inst.bootstrap}: refused for the kernel: {exc}") from None


class ErofsDaemon(Daemon):
    """One nydusd process with the ``erofs`` driver (see the module doc)."""

    def __init__(self, settings: Any, tuning: FuseTuning | None = None) -> None:
        super().__init__(settings, tuning)
        direct_io = self.tuning.blobdev_direct_io
        #: use a blob's complete cache file as its device (no FUSE round trip)
        self.direct_files = self.tuning.direct_blob_files
        #: blob id -> how many mounts use its cache file directly
        self.direct: dict[str, int] = {}
        self.blobfs = BlobDeviceFs(direct_io=direct_io)
        self.kmounts: dict[str, KernelMount] = {}
        self.blobdir = ""
        self._fuse_fd = -1
        self._conn = 0
        self._session: FuseSession | None = None
        self._reaper: Reaper | None = None
        self._exit: trio.Event | None = None
        self._root_id = 0

    # -- before mounting ------------------------------------------------------------------------

    def check_driver(self) -> None:
        """Refuse when this host cannot mount EROFS from files (one line naming fusedev)."""
        why = erofs_unavailable()
        if why:
            raise UsageError(why)

    def prepare(self) -> None:
        """Check the host, prepare as fusedev does, then check every bootstrap for the kernel."""
        super().prepare()
        try:
            for inst in self.vfs.instances():
                check_bootstrap(inst)
        except BaseException:
            self._close_instances()
            raise

    # -- running --------------------------------------------------------------------------------

    def target_of(self, mountpoint: str) -> str:
        """Return the host path where the image at daemon path ``mountpoint`` is mounted."""
        mp = Vfs.normalize(mountpoint)
        return self.mountpoint if mp == "/" else os.path.join(self.mountpoint, mp.lstrip("/"))

    async def run(self) -> int:
        """Mount the blob devices and the images, serve until told to stop, unmount."""
        self._exit = trio.Event()
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._close_instances)
            # With a supervisor the mounts must outlive this process (failover): no reaper.
            self._reaper = None if self.settings.supervisor else Reaper()
            if self._reaper is not None:
                stack.callback(self._reaper.close)
            stack.callback(self._stop_blobfs)
            stack.callback(self._unmount_root)
            stack.callback(self._unmount_images)
            if not self.tuning.upgrade:  # --upgrade: everything comes with the takeover
                self._start_blobfs()
                if "/" not in self.vfs.mounts:
                    self._mount_root()
                for inst in self.vfs.instances():
                    await trio.to_thread.run_sync(self._mount_image, inst)
            self._mounted = True
            self._mount_lock = trio.Lock()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._watch_signals_erofs)
                nursery.start_soon(self._watch_mounts)
                if self._listener is not None:
                    from .api import build_api

                    listener, self._listener = self._listener, None
                    await nursery.start(build_api(self).serve, listener)
                if self.tuning.upgrade:
                    self.state = "INIT"
                    log.info("nydusd %s waiting for PUT /api/v1/daemon/fuse/takeover", __version__)
                else:
                    self.state = "RUNNING"
                    await self.publish_state()
                log.info("nydusd %s serving %s with the erofs driver (%s)", __version__, self.mountpoint,
                         ", ".join(f"{k.target}={k.instance.bootstrap}" for k in self.kmounts.values())
                         or "no image yet: mount through the API")
                await self._exit.wait()
                self.state = "STOPPED"
                nursery.cancel_scope.cancel()
        log.info("nydusd stopped; %s unmounted", self.mountpoint)
        return 0

    def _start_blobfs(self) -> None:
        base = RUN_DIR
        try:
            os.makedirs(base, mode=0o700, exist_ok=True)
        except OSError:
            base = tempfile.gettempdir()
        self.blobdir = tempfile.mkdtemp(prefix=f"blobdev-{os.getpid()}-", dir=base)
        if self._reaper is not None:
            self._reaper.tell(f"dir {self.blobdir}")
        try:
            self._fuse_fd = mount_fuse(self.blobdir, fsname="nydusd-blobs", subtype="nydus-blobdev")
        except OSError as exc:
            os.rmdir(self.blobdir)
            raise UsageError(f"{self.blobdir}: cannot mount the blob-device filesystem ({exc.strerror}); "
                             f"{FUSEDEV_HINT}") from None
        ident = mount_id(self.blobdir)
        if ident is not None and self._reaper is not None:
            self._reaper.tell(f"mount {ident} {self.blobdir}")
        self._session = FuseSession(self._fuse_fd, self.blobfs, threads=max(2, self.settings.threads))
        self._session.start()
        self._conn = connection_id(self.blobdir)
        if self._reaper is not None:
            self._reaper.tell(f"conn {self._conn}")

    def _mount_root(self) -> None:
        """Without an image at ``/``, put a small read-only-to-others tmpfs at ``-M`` to hold the
        images' mountpoints (what fusedev's pseudo-directories are)."""
        try:
            mount_tmpfs(self.mountpoint)
        except OSError as exc:
            raise UsageError(f"{self.mountpoint}: cannot mount the root directory: {exc.strerror}") from None
        self._root_id = mount_id(self.mountpoint) or 0
        if self._reaper is not None:
            self._reaper.tell(f"mount {self._root_id} {self.mountpoint}")

    def _unmount_root(self) -> None:
        if self._root_id and any(m.mount_id == self._root_id for m in mounts_at(self.mountpoint)):
            try:
                umount(self.mountpoint)
            except OSError:
                with contextlib.suppress(OSError):
                    umount(self.mountpoint, lazy=True)
        if self._reaper is not None:
            self._reaper.tell(f"umount {self._root_id}")
        self._root_id = 0

    def _device_for(self, inst: RafsInstance, index: int, pins: list[int],
                    devices: list[BlobDevice]) -> str:
        """Return the device path of blob ``index``: its complete cache file (pinned with a shared
        ``flock``, so hole punching and ``nydus cache gc`` leave it alone), else a blob device."""
        p = inst.pipeline
        if self.direct_files:
            path = p.complete_blob_file(index)
            if path is not None:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    pass
                else:
                    fcntl.flock(fd, fcntl.LOCK_SH)
                    if os.fstat(fd).st_ino == os.stat(path).st_ino:  # not replaced by a gc meanwhile
                        pins.append(fd)
                        self.direct[p.blob_id(index)] = self.direct.get(p.blob_id(index), 0) + 1
                        log.info("blob %s: complete in the cache, used directly as the device",
                                 p.blob_id(index))
                        return path
                    os.close(fd)
        dev = self.blobfs.add(p, index, p.blob_id(index))
        devices.append(dev)
        return os.path.join(self.blobdir, dev.name)

    def _release(self, inst: RafsInstance, devices: list[BlobDevice], pins: list[int],
                 ids: list[str]) -> None:
        for d in devices:
            self.blobfs.remove(d, inst.pipeline)
        for fd in pins:
            os.close(fd)
        for bid in ids:
            n = self.direct.get(bid, 0) - 1
            if n > 0:
                self.direct[bid] = n
            else:
                self.direct.pop(bid, None)

    def _mount_image(self, inst: RafsInstance) -> KernelMount:
        """Give ``inst``'s blobs devices and mount it with EROFS at its target."""
        target = self.target_of(inst.mountpoint)
        if not os.path.isdir(target):
            os.makedirs(target, exist_ok=True)
        devices: list[BlobDevice] = []
        pins: list[int] = []
        paths: list[str] = []
        before = dict(self.direct)
        try:
            paths = [self._device_for(inst, i, pins, devices) for i in range(len(inst.image.blobs))]
            mount_erofs(inst.bootstrap, paths, target)
        except BaseException as exc:
            direct_ids = [bid for bid in self.direct if self.direct[bid] > before.get(bid, 0)]
            self._release(inst, devices, pins, direct_ids)
            if isinstance(exc, OSError):
                raise UsageError(f"{inst.bootstrap}: EROFS mount at {target} failed: {exc.strerror}; "
                                 f"{FUSEDEV_HINT}") from None
            raise
        direct_ids = [inst.pipeline.blob_id(i) for i, path in enumerate(paths)
                      if not path.startswith(self.blobdir + os.sep)]
        ident = mount_id(target) or 0
        km = KernelMount(target, inst, devices, ident, pins, direct_ids)
        self.kmounts[inst.mountpoint] = km
        if self._reaper is not None:
            self._reaper.tell(f"mount {ident} {target}")
        return km

    def _unmount_image(self, km: KernelMount) -> None:
        """Unmount one EROFS mount (lazily when files are still open), then release its devices."""
        if any(m.mount_id == km.mount_id for m in mounts_at(km.target)):
            try:
                umount(km.target)
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    log.error("unmounting %s: %s", km.target, exc.strerror)
                log.warning("%s is busy: detached; its open files fail with EIO once the daemon "
                            "stops", km.target)
                with contextlib.suppress(OSError):
                    umount(km.target, lazy=True)
        if self._reaper is not None:
            self._reaper.tell(f"umount {km.mount_id}")
        self._release(km.instance, km.devices, km.pins, km.direct_ids)

    def _unmount_images(self) -> None:
        for key in sorted(self.kmounts, reverse=True):
            self._unmount_image(self.kmounts.pop(key))

    def _stop_blobfs(self) -> None:
        if self._session is not None:
            self._session.stop()
        if self.blobdir:
            try:
                umount(self.blobdir)
            except OSError:  # a lazily detached EROFS mount still holds a device open
                with contextlib.suppress(OSError):
                    umount(self.blobdir, lazy=True)
                abort_connection(self._conn)
        if self._session is not None:
            if not self._session.join(5):
                abort_connection(self._conn)
                self._session.join(5)
            self._session = None
        if self._fuse_fd >= 0:
            os.close(self._fuse_fd)
            self._fuse_fd = -1
        if self.blobdir:
            with contextlib.suppress(OSError):
                os.rmdir(self.blobdir)
            self.blobdir = ""

    async def _watch_signals_erofs(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                log.info("received %s: unmounting", signal.Signals(signum).name)
                self.request_exit()

    async def _watch_mounts(self) -> None:
        """End the daemon when its mount at ``-M`` (the image at /, or the root directory) was
        unmounted from outside (as fusedev does)."""
        while True:
            await trio.sleep(WATCH_INTERVAL)
            km = self.kmounts.get("/")
            ident = km.mount_id if km is not None else self._root_id
            if ident and not any(m.mount_id == ident for m in mounts_at(self.mountpoint)):
                log.info("%s was unmounted from outside: stopping", self.mountpoint)
                self.request_exit()
                return

    def request_exit(self) -> None:
        """End the daemon (safe to call from the trio thread, more than once)."""
        if self._exit is not None:
            self._exit.set()

    # -- the mount API ---------------------------------------------------------------------------

    async def mount(self, mountpoint: str, source: str, config: Any = None,
                    prefetch_files: Sequence[str] = ()) -> RafsInstance:
        """Mount ``source`` with EROFS at ``-M``/``mountpoint`` (``POST /api/v1/mount``)."""
        mp = Vfs.normalize(mountpoint)
        cfg = self._config_for(mp, config)
        assert self._mount_lock is not None
        async with self._mount_lock:
            if mp in self.vfs.mounts:
                raise FileExistsError(f"mountpoint {mp} already has an image mounted")
            inst = await trio.to_thread.run_sync(
                lambda: open_instance(source, cfg, prefetch_files=prefetch_files))
            try:
                await trio.to_thread.run_sync(check_bootstrap, inst)
                self.vfs.attach(mp, inst)
                await trio.to_thread.run_sync(self._mount_image, inst)
            except BaseException:
                if self.vfs.mounts.get(mp) is inst:
                    self.vfs.detach(mp)
                    self.vfs.reap()
                inst.close()
                raise
            inst.attach_id()
        log.info("mounted %s at %s with EROFS", inst.bootstrap, self.target_of(mp))
        await self.publish_state()
        return inst

    async def umount(self, mountpoint: str) -> None:
        """Unmount the EROFS mount of ``mountpoint`` and close its image (``DELETE /api/v1/mount``)."""
        mp = Vfs.normalize(mountpoint)
        assert self._mount_lock is not None
        async with self._mount_lock:
            inst, _entry = self.vfs.detach(mp)
            km = self.kmounts.pop(mp, None)
            if km is not None:
                await trio.to_thread.run_sync(self._unmount_image, km)
            await trio.to_thread.run_sync(inst.stop_prefetch)
            for dead in self.vfs.reap():
                dead.close()
        log.info("unmounted %s from %s", inst.bootstrap, self.target_of(mp))
        await self.publish_state()

    async def remount(self, mountpoint: str, source: str, config: Any = None,
                      prefetch_files: Sequence[str] = ()) -> RafsInstance:
        """Replace the image at ``mountpoint``: unmount the old EROFS mount, mount the new one."""
        await self.umount(mountpoint)
        return await self.mount(mountpoint, source, config, prefetch_files)

    # -- failover (:mod:`.failover`, :mod:`.erofs_failover`) ----------------------------------------

    async def publish_state(self) -> None:
        """Send the state and FUSE descriptor to the supervisor (``--supervisor``; logged on failure)."""
        if not self.settings.supervisor or self._fuse_fd < 0:
            return
        from .erofs_failover import publish

        try:
            await trio.to_thread.run_sync(publish, self)
        except NydusError as exc:
            log.error("%s", exc)

    async def takeover(self) -> None:
        """``PUT /api/v1/daemon/fuse/takeover``: continue the connection the supervisor holds."""
        from .erofs_failover import adopt

        if self.state != "INIT":
            raise NydusError(f"daemon is {self.state}: takeover needs a daemon started with --upgrade")
        assert self._mount_lock is not None
        async with self._mount_lock:
            await trio.to_thread.run_sync(adopt, self, self.tuning.failover_policy)
        self.state = "RUNNING"
        await self.publish_state()

    def blob_metrics(self, *, pattern: bool = False) -> list[dict[str, Any]]:
        """Per-blob-device read counters (``GET /api/v1/metrics/blobs``); blobs whose complete cache
        file is the device are listed with ``direct: true`` (the kernel reads them, nothing counts).
        ``pattern`` adds each device's access pattern: the first 4096 reads as ``[offset, size]``."""
        out = [{**d.metrics(), "direct": False, **({"pattern": list(d.pattern)} if pattern else {})}
               for d in self.blobfs.devices()]
        out += [{"blob_id": bid, "direct": True, "users": n} for bid, n in sorted(self.direct.items())]
        return out
