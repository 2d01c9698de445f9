"""The nydusd daemon: resolve everything, mount, serve FUSE and the admin API, unmount on every path.

Shaped like pyfuse3's examples: :meth:`Daemon.prepare` opens the bootstrap, the backend, cache,
compressor, digester and prefetch plugins and the API socket while nothing is mounted yet (any error
is one line and a non-zero exit); :meth:`Daemon.run` then mounts with ``pyfuse3.init`` inside one
``AsyncExitStack`` whose callbacks close the instances and call ``pyfuse3.close(unmount=True)``
whatever happens, runs the FUSE loop, the API server and the signal watcher in one trio nursery
(prefetch runs on the read pipeline's worker threads from the moment an image is opened), and
leaves when SIGTERM/SIGINT, ``PUT /api/v1/daemon/exit`` or an external ``umount`` ends the FUSE loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyfuse3
import trio

from nydus_core.config import NydusConfig, parse_config
from nydus_core.errors import ConfigError, UsageError
from nydus_core.interfaces import FS_DRIVERS, ServeOptions

from . import __version__
from .faults import FaultTranslator
from .fusetasks import LazyWorkers
from .instance import RafsInstance, open_instance
from .mountpoint import check_mountpoint, set_readahead
from .ops import KernelCaching, NydusOperations
from .rootless import check_unprivileged_mount
from .vfs import Vfs

log = logging.getLogger("nydusd")

#: Kernel read-ahead for the mount (KiB); 0 keeps the kernel's 128 KiB, which measured as fast as
#: 1-4 MiB on cached data (see the README's measurements).
DEFAULT_READAHEAD_KB = 0
#: Files up to this size (KiB) are pushed into the page cache at open. See the README's measurements.
DEFAULT_STORE_ON_OPEN_KB = 1024
#: FUSE requests served concurrently (pyfuse3 worker tasks).
MAX_FUSE_TASKS = 64


@dataclass(frozen=True)
class FuseTuning:
    """The FUSE frontend's own knobs, beyond upstream (nydusd's ``--readahead-kb``,
    ``--store-on-open-kb``, ``--kernel-cache-timeout``, ``--no-inline-reads``,
    ``--eager-fuse-workers``, ``--no-keep-cache``, and for the erofs driver
    ``--blobdev-keep-cache`` and ``--no-direct-blob-files`` set them)."""

    readahead_kb: int = DEFAULT_READAHEAD_KB
    inline_hits: bool = True
    #: start pyfuse3's extra worker tasks only when a handler has to wait (see ``fusetasks``)
    lazy_workers: bool = True
    cache: KernelCaching = field(default_factory=KernelCaching)
    fsname: str = "nydusd"
    #: let other users use the mount (nydusd's ``--no-allow-other`` turns it off; a non-root user
    #: needs ``user_allow_other`` in /etc/fuse.conf for it)
    allow_other: bool = True
    dev_suid: bool = True
    #: erofs driver: open blob devices with FOPEN_DIRECT_IO (else FOPEN_KEEP_CACHE)
    blobdev_direct_io: bool = True
    #: erofs driver: use a blob's complete cache file as its device
    direct_blob_files: bool = True
    #: ``--upgrade``: serve nothing until ``PUT /api/v1/daemon/fuse/takeover`` (erofs driver)
    upgrade: bool = False
    #: ``--failover-policy``: requests in flight at a takeover: ``resend``, ``flush`` or ``none``
    failover_policy: str = "resend"


class Daemon:
    """One nydusd process: the VFS, FUSE operations, API server and lifecycle.

    ``settings`` is what to serve (the core's :class:`~nydus_core.interfaces.ServeOptions`),
    ``tuning`` this frontend's own knobs."""

    def __init__(self, settings: ServeOptions, tuning: FuseTuning | None = None) -> None:
        self.settings = settings
        self.tuning = tuning = tuning or FuseTuning()
        self.vfs = Vfs()
        self.faults = FaultTranslator()
        self.limiter = trio.CapacityLimiter(max(1, settings.threads))
        self.ops = NydusOperations(self.vfs, faults=self.faults, limiter=self.limiter,
                                   cache=tuning.cache, inline_hits=tuning.inline_hits)
        self.state = "INIT"
        self.mountpoint = settings.mountpoint
        self.started = time.time()
        self._listener: socket.socket | None = None
        self._mounted = False
        self._exit_requested = False
        self._mount_lock: trio.Lock | None = None
        self._nursery: trio.Nursery | None = None

    # -- before mounting ------------------------------------------------------------------------

    def prepare(self) -> None:
        """Check the mountpoint, open the image and every plugin, bind the API socket.

        Raises NydusError (one line) and leaves nothing behind on failure."""
        s = self.settings
        self.check_driver()
        # --upgrade takes over a mount that is already there
        up = self.tuning.upgrade
        self.mountpoint = os.path.abspath(s.mountpoint) if up else check_mountpoint(s.mountpoint)
        check_unprivileged_mount(self.mountpoint, allow_other=self.tuning.allow_other)
        try:
            if s.bootstrap:
                if s.config is None:
                    raise UsageError("--bootstrap needs a config: pass -C/--config FILE or "
                                     "-D/--localfs-dir DIR")
                inst = open_instance(s.bootstrap, s.config, prefetch_files=s.prefetch_files,
                                     workers=None)
                try:
                    self.vfs.attach(s.virtual_mountpoint, inst)
                except (OSError, ValueError) as exc:
                    inst.close()
                    raise UsageError(f"--virtual-mountpoint {s.virtual_mountpoint}: {exc}") from None
                inst.attach_id()
            elif s.prefetch_files:
                raise UsageError("--prefetch-files requires --bootstrap")
            if s.apisock:
                from .httpserver import open_listener

                try:
                    self._listener = open_listener(s.apisock)
                except OSError as exc:
                    raise UsageError(f"--apisock {s.apisock}: {exc}") from None
        except BaseException:
            self._close_instances()
            raise

    def check_driver(self) -> None:
        """Refuse an ``fs_driver`` this daemon class does not serve (UsageError)."""
        driver = self.settings.fs_driver
        if driver not in FS_DRIVERS:
            raise UsageError(f"fs_driver {driver!r}: choose one of {', '.join(FS_DRIVERS)}")
        if driver != "fusedev":
            raise UsageError(f"fs_driver {driver!r} is served by ErofsDaemon, not Daemon")

    # -- running --------------------------------------------------------------------------------

    def fuse_options(self) -> set[str]:
        """Return the mount options given to ``pyfuse3.init``."""
        t = self.tuning
        opts = {"ro", f"fsname={t.fsname}", "subtype=rafs", "default_permissions"}
        if t.allow_other:
            opts.add("allow_other")
        if t.dev_suid and os.geteuid() == 0:
            opts |= {"dev", "suid"}
        return opts

    async def run(self) -> int:
        """Mount, serve until told to stop, unmount. Returns the exit status."""
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._close_instances)
            try:
                pyfuse3.init(self.ops, self.mountpoint, self.fuse_options())
            except RuntimeError as exc:
                raise UsageError(f"{self.mountpoint}: FUSE mount failed ({exc}); is /dev/fuse "
                                 "available and are you root (or is fusermount3 installed)?") from None
            self._mounted = True
            stack.callback(self._unmount)
            self._tune_kernel()
            self._mount_lock = trio.Lock()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._watch_signals)
                if self._listener is not None:
                    from .api import build_api

                    listener, self._listener = self._listener, None
                    await nursery.start(build_api(self).serve, listener)
                self.state = "RUNNING"
                log.info("nydusd %s serving %s (%s)", __version__, self.mountpoint,
                         ", ".join(f"{i.mountpoint}={i.bootstrap}" for i in self.vfs.instances())
                         or "no image yet: mount through the API")
                workers = LazyWorkers()
                lazy = self.tuning.lazy_workers and workers.install()
                if lazy:
                    self.ops.before_wait = workers.before_wait
                try:
                    # lazily: extra tasks end as soon as one task waits for requests (min_tasks=0)
                    await pyfuse3.main(min_tasks=0 if lazy else 1, max_tasks=MAX_FUSE_TASKS)
                finally:
                    self.ops.before_wait = None
                    workers.uninstall()
                    self.state = "STOPPED"
                    nursery.cancel_scope.cancel()
        log.info("nydusd stopped; %s unmounted", self.mountpoint)
        return 0

    def _tune_kernel(self) -> None:
        if self.tuning.readahead_kb:
            set_readahead(self.mountpoint, self.tuning.readahead_kb)

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                log.info("received %s: unmounting", signal.Signals(signum).name)
                self.request_exit()

    def request_exit(self) -> None:
        """End the FUSE loop (safe to call from the trio thread, more than once)."""
        if not self._exit_requested and self._mounted:
            self._exit_requested = True
            pyfuse3.terminate()

    def _unmount(self) -> None:
        if self._mounted:
            self._mounted = False
            try:
                pyfuse3.close(unmount=True)
            except Exception as exc:
                log.error("unmounting %s: %s (clean up with 'fusermount3 -u %s')",
                          self.mountpoint, exc, self.mountpoint)

    def _close_instances(self) -> None:
        for inst in list(self.vfs.slots.values()):
            inst.close()
        if self._listener is not None:
            path = self._listener.getsockname()
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                os.unlink(path)

    # -- the mount API ---------------------------------------------------------------------------

    def _config_for(self, mountpoint: str, config: Any) -> NydusConfig:
        if config in (None, ""):
            if self.settings.config is None:
                raise ConfigError("no config in the request and the daemon has none (-C/--config)",
                                  file=f"mount {mountpoint}")
            return self.settings.config
        if isinstance(config, dict):
            return parse_config(config, source=f"config of mount {mountpoint}")
        if not isinstance(config, str):
            raise ConfigError("'config' must be a JSON string", file=f"mount {mountpoint}")
        return parse_config(config, source=f"config of mount {mountpoint}")

    async def mount(self, mountpoint: str, source: str, config: Any = None,
                    prefetch_files: Sequence[str] = ()) -> RafsInstance:
        """Mount the RAFS image ``source`` at ``mountpoint`` inside the daemon (``POST /api/v1/mount``)."""
        mp = Vfs.normalize(mountpoint)
        cfg = self._config_for(mp, config)
        assert self._mount_lock is not None
        async with self._mount_lock:
            if mp in self.vfs.mounts:
                raise FileExistsError(f"mountpoint {mp} already has an image mounted")
            inst = await trio.to_thread.run_sync(
                lambda: open_instance(source, cfg, prefetch_files=prefetch_files))
            try:
                entry = self.vfs.attach(mp, inst)
            except BaseException:
                inst.close()
                raise
            inst.attach_id()
            if entry is not None:
                await _invalidate(*entry)
        log.info("mounted %s at %s", inst.bootstrap, mp)
        return inst

    async def umount(self, mountpoint: str) -> None:
        """Unmount the image at ``mountpoint`` (``DELETE /api/v1/mount``)."""
        assert self._mount_lock is not None
        async with self._mount_lock:
            inst, entry = self.vfs.detach(mountpoint)
            await trio.to_thread.run_sync(inst.stop_prefetch)
            if entry is not None:
                await _invalidate(*entry)
            for dead in self.vfs.reap():
                dead.close()
        log.info("unmounted %s from %s", inst.bootstrap, inst.mountpoint)

    async def remount(self, mountpoint: str, source: str, config: Any = None,
                      prefetch_files: Sequence[str] = ()) -> RafsInstance:
        """Replace the image at ``mountpoint`` (``PUT /api/v1/mount``): new inodes, old ones go stale."""
        mp = Vfs.normalize(mountpoint)
        cfg = self._config_for(mp, config)
        if mp not in self.vfs.mounts:
            raise FileNotFoundError(f"no image is mounted at {mp}")
        new = await trio.to_thread.run_sync(
            lambda: open_instance(source, cfg, prefetch_files=prefetch_files))
        assert self._mount_lock is not None
        async with self._mount_lock:
            try:
                old, _entry = self.vfs.detach(mp)
                entry = self.vfs.attach(mp, new)
            except BaseException:
                new.close()
                raise
            new.attach_id()
            await trio.to_thread.run_sync(old.stop_prefetch)
            if entry is not None:
                await _invalidate(*entry)
            for dead in self.vfs.reap():
                dead.close()
        log.info("remounted %s at %s", new.bootstrap, mp)
        return new

    # -- views ----------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Return ``GET /api/v1/daemon`` (upstream's DaemonInfo)."""
        import sys

        return {
            "version": {
                "package_ver": __version__,
                "git_commit": "",
                "build_time": "",
                "profile": "release",
                "rustc": f"python {sys.version.split()[0]}",
            },
            "id": self.settings.daemon_id or None,
            "supervisor": self.settings.supervisor,
            "state": self.state,
            "backend_collection": {i.mountpoint: i.describe_json() for i in self.vfs.instances()},
        }

    def instance_for(self, ident: str | None) -> RafsInstance:
        """Return the instance named by a metrics ``?id=`` (its mountpoint); the only one by default."""
        live = self.vfs.instances()
        if ident:
            try:
                mp = Vfs.normalize(ident)
            except ValueError:
                mp = ident
            inst = self.vfs.mounts.get(mp)
            if inst is None:
                raise KeyError(f"no instance with id {ident}; mounted: "
                               f"{', '.join(self.vfs.mounts) or 'none'}")
            return inst
        if len(live) == 1:
            return live[0]
        if not live:
            raise KeyError("no image is mounted")
        raise KeyError(f"several images are mounted ({', '.join(self.vfs.mounts)}): pass ?id=MOUNTPOINT")


async def _invalidate(parent: int, name: bytes) -> None:
    """Drop the kernel's dentry for a pseudo-directory entry that changed, before answering the API
    call (so the caller's next lookup sees the change). Done on a worker thread: the kernel may
    need this loop to answer a pending request on that entry first."""

    def invalidate() -> None:
        try:
            pyfuse3.invalidate_entry(parent, name)
        except OSError as exc:  # ENOENT: the kernel did not know the entry
            log.debug("invalidate_entry(%d, %r): %s", parent, name, exc)

    await trio.to_thread.run_sync(invalidate)
