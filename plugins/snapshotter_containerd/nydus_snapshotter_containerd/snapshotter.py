"""The snapshotter's logic, free of gRPC: overlay snapshots, plus Nydus images mounted lazily.

Layout under ``root``: ``metadata.db`` (:mod:`.metadata`), ``snapshots/<id>/fs`` and ``work``
(overlay upper and work dirs), ``snapshots/<id>/image.boot`` (a Nydus bootstrap snapshot),
``cache/`` (the blob cache shared by all images), and the nydusd daemons' mounts, sockets, configs
and logs (:mod:`.nydusd`: ``mnt/`` when shared, ``snapshots/<id>/mnt`` when dedicated).

- An ordinary layer is an overlay snapshot as containerd's own overlay snapshotter makes them.
- A layer labelled ``nydus-blob`` with a ``snapshot.ref`` target is committed empty under the target
  at once, and Prepare answers AlreadyExists: nothing is downloaded.
- A layer labelled ``nydus-bootstrap`` is fetched from the registry (``cri.image-ref`` +
  ``cri.layer-digest``, digest checked), its bootstrap kept, and committed the same way.
- An active or view snapshot whose nearest ancestor chain holds a bootstrap snapshot gets an overlay
  mount whose lowest lowerdir is that image's RAFS mount (its own nydusd, or the shared one).
- When the last active/view snapshot of an image goes, its RAFS instance is unmounted; when its
  bootstrap snapshot is removed, the blobs only it used leave the cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nydus_core.errors import NydusError

from . import labels as L
from .config import SnapshotterConfig

if TYPE_CHECKING:
    from .supervisor import DaemonSupervisor
from .filters import matcher
from .metadata import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    Kind,
    MetaStore,
    Snapshot,
)

log = logging.getLogger("containerd-nydus")


def nydusd_flags(config: SnapshotterConfig) -> list[str]:
    """nydusd flags every daemon of this snapshotter gets, from upstream's ``[daemon]``/``[log]`` keys."""
    args = ["--log-level", config.log_level, "--log-rotation-size", str(config.nydusd_log_rotation_size)]
    if config.recover_policy == "failover":
        args += ["--failover-policy", config.failover_policy]
    if config.threads_number:
        args += ["--thread-num", str(config.threads_number)]
    return args


class UpgradeRefused(NydusError):
    """A live upgrade was refused before anything changed (a daemon cannot hand its session over)."""


@dataclass
class Mount:
    """One mount as containerd's ``types.Mount``."""

    type: str
    source: str
    options: list[str] = field(default_factory=list)


@dataclass
class Usage:
    """Disk usage of one snapshot."""

    size: int = 0
    inodes: int = 0


def _du(path: Path) -> Usage:
    u = Usage()
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            u.inodes += 1
            u.size += st.st_blocks * 512
    return u


class Snapshotter:
    """containerd's snapshotter operations over a root directory."""

    def __init__(self, config: SnapshotterConfig, *,
                 fetch: Callable[[str, str, Path], int] | None = None) -> None:
        from .nydusd import make_daemons

        self.config = config
        self.root = config.root_path
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "snapshots").mkdir(exist_ok=True)
        self.cache_dir = config.cache_path
        self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.meta = MetaStore(self.root / "metadata.db")
        self.fd_holder: Any = None
        sup_path: str | None = None
        if config.recover_policy == "failover":
            if config.fs_driver == "erofs":
                from nydus_frontend_fuse.failover import Supervisor

                self.fd_holder = Supervisor(self.root / "supervisor" / "supervisor.sock")
                sup_path = self.fd_holder.path
            else:
                log.warning("recover_policy 'failover' needs fs_driver 'erofs' (a fusedev daemon's FUSE "
                            "session cannot be handed over); dead daemons are restarted instead")
        self.daemons = make_daemons(config.daemon_mode, self.root, config.nydusd, nydusd_flags(config),
                                    config.fs_driver, sup_path)
        self._fetch = fetch or self._fetch_from_registry
        self._mount_lock = threading.RLock()
        # Held while a snapshot's row and directory are created, and while Cleanup looks for
        # directories without a row (containerd calls Cleanup concurrently with Prepare).
        self._dirs_lock = threading.Lock()
        self._supervisor: DaemonSupervisor | None = None

    # -- paths ----------------------------------------------------------------------------------

    def snapshot_dir(self, sid: int) -> Path:
        """``snapshots/<id>``."""
        return self.root / "snapshots" / str(sid)

    def fs_dir(self, sid: int) -> Path:
        """``snapshots/<id>/fs``: the layer's content (or the container's upper dir)."""
        return self.snapshot_dir(sid) / "fs"

    def bootstrap_path(self, sid: int) -> Path:
        """Where a bootstrap snapshot keeps the image's bootstrap."""
        return self.snapshot_dir(sid) / "image.boot"

    # -- start-up -------------------------------------------------------------------------------

    def _images_in_use(self) -> dict[int, Snapshot]:
        """Bootstrap snapshots that active or view snapshots stand on, by id."""
        needed: dict[int, Snapshot] = {}
        for s in self.meta.all():
            base = self._nydus_base(s) if s.kind != Kind.COMMITTED else None
            if base is not None:
                needed[base.id] = base
        return needed

    def start(self) -> None:
        """Reconnect to (or start) nydusd, mount every image an active/view snapshot uses, and watch
        the daemons when ``recover_policy = "restart"`` (:mod:`.supervisor`)."""
        if self.config.recover_policy in ("restart", "failover") and self._supervisor is None:
            from .supervisor import DaemonSupervisor

            self._supervisor = DaemonSupervisor(self.daemons, self._recover)
            self._supervisor.start()
        needed = self._images_in_use()
        try:
            what = self.daemons.start()
        except NydusError as exc:
            # Still serve: plain OCI snapshots work, removals go through, and Nydus images are
            # mounted (or say why not) on their next Mounts/Prepare.
            log.log(logging.ERROR if needed else logging.WARNING, "nydusd is not running: %s", exc)
            return
        log.info("%s daemon mode: %s; %d image(s) in use", self.daemons.mode, what, len(needed))
        for boot in needed.values():
            try:
                self._mount_image(boot)
            except NydusError as exc:
                log.error("mounting image %s: %s", boot.labels.get(L.NYDUS_IMAGE, boot.name), exc)
        if self.fd_holder is not None:  # a restarted snapshotter gets the descriptors back
            for d in self.daemons.daemons().values():
                d.resend_state()

    def upgrade_daemons(self, command: str) -> list[dict[str, Any]]:
        """Live upgrade: each running daemon in turn is replaced by ``command --upgrade`` taking its
        FUSE connection over (erofs driver, recover policy failover); later daemons start from
        ``command``. ``UpgradeRefused`` before anything changes when a daemon cannot be handed over;
        NydusError naming the daemon (and those done before it) when one fails."""
        with self._mount_lock:  # no recovery, mount or unmount meanwhile
            daemons = [d for d in self.daemons.daemons().values() if d.alive()]
            holder = self.fd_holder
            stuck = [d.daemon_id for d in daemons
                     if not d.can_fail_over() or holder is None or not holder.has_state(d.daemon_id)]
            if stuck:
                raise UpgradeRefused(f"daemons {', '.join(stuck)} cannot be upgraded live: that needs "
                                     "fs_driver 'erofs' with recover_policy 'failover' (a fusedev session "
                                     "cannot be handed over)")
            done: list[dict[str, Any]] = []
            for d in daemons:
                old_pid, old_command = d.pid(), d.command
                d.command = command
                try:
                    d.take_over()
                except NydusError as exc:
                    d.command = old_command
                    before = ", ".join(str(x["id"]) for x in done) or "none"
                    raise NydusError(f"upgrading nydusd {d.daemon_id}: {exc} (upgraded before it: "
                                     f"{before})") from None
                log.info("nydusd %s upgraded live to %s (pid %s -> %s)", d.daemon_id, command, old_pid,
                         d.pid())
                done.append({"id": d.daemon_id, "old_pid": old_pid or 0, "pid": d.pid() or 0})
            self.config.nydusd = command
            self.daemons.set_command(command)
            return done

    def _recover(self, dead: list[str]) -> None:
        """Daemons ``dead`` died: hand their FUSE connection to a new daemon (policy failover, erofs
        driver), else start them again and remount the images in use (policy restart)."""
        with self._mount_lock:
            # still dead now that we hold the lock (a live upgrade may have replaced it meanwhile)
            dead = [n for n in dead if (d := self.daemons.daemons().get(n)) is None or d.dead()]
            dead = [n for n in dead if not self._fail_over(n)]
            if not dead:
                return
            needed = self._images_in_use()
            names = {self.image_name(b): b for b in needed.values()}
            if self.daemons.mode == "shared":
                todo = list(needed.values()) if needed else []
            else:
                todo = [names[n] for n in dead if n in names]
            log.warning("nydusd %s died; recover_policy restart: starting a new daemon for %d image(s)",
                        ", ".join(dead), len(todo))
            if self.daemons.mode == "shared" and not todo:
                self.daemons.start()  # the shared daemon runs even with no image
            for boot in todo:
                try:
                    self._mount_image(boot)
                except NydusError as exc:
                    log.error("remounting image %s: %s", boot.labels.get(L.NYDUS_IMAGE, boot.name), exc)
                else:
                    log.info("image %s served again", boot.labels.get(L.NYDUS_IMAGE, boot.name))
            for n in dead:  # a dedicated daemon nobody needs any more: forget it
                d = self.daemons.daemon_of(n)
                if d is not None and d.dead() and n not in names and self.daemons.mode == "dedicated":
                    self._stop_image_daemon(n)

    def _stop_image_daemon(self, name: str) -> bool:
        """Unmount image ``name`` (dedicated: stop its daemon; the supervisor forgets it)."""
        done = self.daemons.umount(name)
        if self.fd_holder is not None and self.daemons.mode == "dedicated":
            self.fd_holder.forget(name)
        return done

    def _fail_over(self, name: str) -> bool:
        """Replace dead daemon ``name`` by ``nydusd --upgrade`` taking over its connection; whether done."""
        d = self.daemons.daemons().get(name)
        holder = self.fd_holder
        if d is None or holder is None or not d.can_fail_over() or not holder.has_state(name):
            return False
        try:
            d.take_over()
        except NydusError as exc:
            log.error("nydusd %s died and failover failed (%s); restarting it instead", name, exc)
            state = holder.take(name)  # no reaper runs under a supervisor: detach the dead devices
            if state and state.get("blobdir"):
                from nydus_core.mounts import force_unmount

                if force_unmount(str(state["blobdir"])):
                    with contextlib.suppress(OSError):
                        os.rmdir(str(state["blobdir"]))
            return False
        log.warning("nydusd %s died; recover_policy failover: a new daemon took over its mounts", name)
        return True

    def close(self) -> None:
        """Close the metadata store and the API connections. nydusd keeps running for the containers,
        unless ``cleanup_on_close`` asks to unmount every image and stop it (upstream's key)."""
        if self._supervisor is not None:
            self._supervisor.stop()
        if self.config.cleanup_on_close:
            log.info("cleanup_on_close: stopping nydusd")
            self.daemons.stop()
        self.daemons.close()
        if self.fd_holder is not None:
            self.fd_holder.close()
        self.meta.close()

    # -- operations -----------------------------------------------------------------------------

    def prepare(self, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        """Create an active snapshot; remote layers answer AlreadyExistsError after committing."""
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        """Create a read-only view of ``parent``."""
        return self._create(Kind.VIEW, key, parent, labels)

    def _create(self, kind: Kind, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        if not key:
            raise InvalidArgumentError("snapshot key must not be empty")
        target = labels.get(L.TARGET_REF, "")
        remote = kind == Kind.ACTIVE and target and (
            labels.get(L.NYDUS_BLOB) == "true" or labels.get(L.NYDUS_BOOTSTRAP) == "true")
        if remote:
            return self._prepare_remote(key, parent, target, labels)
        with self._dirs_lock, self.meta.transaction():
            snap = self.meta.create(key, parent, kind, labels)
            d = self.snapshot_dir(snap.id)
            if d.exists():
                shutil.rmtree(d)
            self.fs_dir(snap.id).mkdir(parents=True)
            if kind == Kind.ACTIVE:
                (d / "work").mkdir()
        try:
            return self._mounts(snap)
        except BaseException:
            self._remove_quietly(key)
            raise

    def _prepare_remote(self, key: str, parent: str, target: str, labels: dict[str, str]) -> list[Mount]:
        existing = self.meta.find(target)
        if existing is not None:
            raise AlreadyExistsError(f"target snapshot {target} already exists")
        with self._dirs_lock:
            snap = self.meta.create(key, parent, Kind.ACTIVE, labels)
            self.fs_dir(snap.id).mkdir(parents=True, exist_ok=True)
        try:
            extra = {L.REMOTE: "remote snapshot"}
            if labels.get(L.NYDUS_BOOTSTRAP) == "true":
                ref, digest = labels.get(L.IMAGE_REF, ""), labels.get(L.LAYER_DIGEST, "")
                if not ref or not digest:
                    raise InvalidArgumentError(f"nydus bootstrap layer {target}: labels {L.IMAGE_REF} "
                                               f"and {L.LAYER_DIGEST} are needed")
                size = self._fetch(ref, digest, self.bootstrap_path(snap.id))
                self._check_bootstrap(self.bootstrap_path(snap.id), f"{ref} layer {digest}")
                log.info("fetched bootstrap of %s (%s, %d bytes)", ref, digest, size)
                extra[L.NYDUS_IMAGE] = ref
            self.meta.commit(key, target, extra)
        except BaseException:
            self._remove_quietly(key)
            raise
        raise AlreadyExistsError(f"target snapshot {target} already exists")

    def _fetch_from_registry(self, ref: str, digest: str, dest: Path) -> int:
        from .remote import fetch_bootstrap, image_source

        return fetch_bootstrap(image_source(ref, self.config), digest, dest)

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active or view snapshot."""
        snap = self.meta.get(key)
        if snap.kind == Kind.COMMITTED:
            raise FailedPreconditionError(f"snapshot {key} is committed: it has no mounts")
        return self._mounts(snap)

    def commit(self, name: str, key: str, labels: dict[str, str]) -> None:
        """Commit the active ``key`` as ``name``."""
        if not name:
            raise InvalidArgumentError("commit name must not be empty")
        snap = self.meta.get(key)
        base = self._nydus_base(snap)
        self.meta.commit(key, name, labels)
        shutil.rmtree(self.snapshot_dir(snap.id) / "work", ignore_errors=True)
        if base is not None:
            self._release_if_unused(base)

    def remove(self, key: str) -> None:
        """Remove a snapshot (FailedPrecondition while it has children)."""
        snap = self.meta.get(key)
        base = self._nydus_base(snap) if snap.kind != Kind.COMMITTED else None
        self.meta.delete(key)
        if snap.labels.get(L.NYDUS_BOOTSTRAP) == "true" and snap.kind == Kind.COMMITTED:
            self._forget_image(snap)
        shutil.rmtree(self.snapshot_dir(snap.id), ignore_errors=True)
        if base is not None:
            self._release_if_unused(base)

    def _remove_quietly(self, key: str) -> None:
        try:
            snap = self.meta.delete(key)
        except NydusError:
            return
        shutil.rmtree(self.snapshot_dir(snap.id), ignore_errors=True)

    def stat(self, key: str) -> Snapshot:
        """The snapshot's info."""
        return self.meta.get(key)

    def update(self, name: str, labels: dict[str, str], paths: Sequence[str]) -> Snapshot:
        """Update labels: all of them without ``paths``, else ``labels`` / ``labels.KEY`` paths."""
        snap = self.meta.get(name)
        if not paths:
            new = dict(labels)
        else:
            new = dict(snap.labels)
            for p in paths:
                if p == "labels":
                    new = dict(labels)
                elif p.startswith("labels."):
                    k = p[len("labels."):]
                    if k in labels:
                        new[k] = labels[k]
                    else:
                        new.pop(k, None)
                else:
                    raise InvalidArgumentError(f"cannot update field {p!r} of snapshot {name}")
        return self.meta.set_labels(name, new)

    def usage(self, key: str) -> Usage:
        """Disk usage: the layer's (or upper dir's) files; a bootstrap snapshot counts its bootstrap."""
        snap = self.meta.get(key)
        u = _du(self.fs_dir(snap.id))
        boot = self.bootstrap_path(snap.id)
        if boot.exists():
            u.size += boot.stat().st_blocks * 512
            u.inodes += 1
        return u

    def walk(self, filters: Sequence[str]) -> list[Snapshot]:
        """Every snapshot matching any of ``filters``."""
        pred = matcher(filters)
        return [s for s in self.meta.all() if pred(s)]

    def cleanup(self) -> int:
        """Remove snapshot directories no snapshot owns, and cached blobs no image uses; return how many."""
        n = 0
        with self._dirs_lock:
            ids = self.meta.ids()
            orphans = [d for d in (self.root / "snapshots").iterdir()
                       if d.name.isdigit() and int(d.name) not in ids]
        for d in orphans:
            shutil.rmtree(d, ignore_errors=True)
            n += 1
        used: set[str] = set()
        for s in self.meta.all():
            if s.labels.get(L.NYDUS_BOOTSTRAP) == "true":
                used |= self._blob_ids(self.bootstrap_path(s.id))
        for f in self.cache_dir.iterdir():
            blob_id = f.name.split(".", 1)[0]
            if len(blob_id) == 64 and blob_id not in used:
                with contextlib.suppress(OSError):
                    f.unlink()
                    n += 1
        return n

    # -- mounts ---------------------------------------------------------------------------------

    def _nydus_base(self, snap: Snapshot) -> Snapshot | None:
        """The bootstrap snapshot below ``snap`` (nearest), if it stands on a Nydus image."""
        cur = snap.parent
        while cur:
            s = self.meta.find(cur)
            if s is None:
                return None
            if s.labels.get(L.NYDUS_BOOTSTRAP) == "true" and self.bootstrap_path(s.id).exists():
                return s
            cur = s.parent
        return None

    def _mounts(self, snap: Snapshot) -> list[Mount]:
        lowers: list[str] = []
        cur = snap.parent
        while cur:
            s = self.meta.get(cur)
            if s.labels.get(L.NYDUS_BOOTSTRAP) == "true" and self.bootstrap_path(s.id).exists():
                lowers.append(str(self._mount_image(s)))
                break
            lowers.append(str(self.fs_dir(s.id)))
            cur = s.parent
        fs = str(self.fs_dir(snap.id))
        if snap.kind == Kind.ACTIVE:
            if not lowers:
                return [Mount("bind", fs, ["rw", "rbind"])]
            work = str(self.snapshot_dir(snap.id) / "work")
            opts = [f"workdir={work}", f"upperdir={fs}", f"lowerdir={':'.join(lowers)}"]
            if self.config.overlay_volatile or snap.labels.get(L.OVERLAY_VOLATILE) is not None:
                opts.append("volatile")
            return [Mount("overlay", "overlay", opts)]
        if not lowers:
            return [Mount("bind", fs, ["ro", "rbind"])]
        if len(lowers) == 1:
            return [Mount("bind", lowers[0], ["ro", "rbind"])]
        return [Mount("overlay", "overlay", [f"lowerdir={':'.join(lowers)}"])]

    def image_name(self, boot: Snapshot) -> str:
        """The name of an image: its sub-path in the shared nydusd, its dedicated nydusd's id."""
        return str(boot.id)

    def _mount_image(self, boot: Snapshot) -> Path:
        from .remote import image_source

        ref = boot.labels.get(L.NYDUS_IMAGE) or boot.labels.get(L.IMAGE_REF, "")
        src = image_source(ref, self.config)
        cfg = self.config.daemon_config(scheme=src.scheme, host=src.host, repo=src.repo, auth=src.auth,
                                        work_dir=str(self.cache_dir))
        with self._mount_lock:
            return self.daemons.mount(self.image_name(boot), self.bootstrap_path(boot.id), cfg)

    def _release_if_unused(self, boot: Snapshot) -> None:
        """Unmount the image when no active or view snapshot stands on it any more."""
        for s in self.meta.all():
            if s.kind != Kind.COMMITTED:
                b = self._nydus_base(s)
                if b is not None and b.id == boot.id:
                    return
        with self._mount_lock:
            try:
                if self._stop_image_daemon(self.image_name(boot)):
                    log.info("unmounted image %s", boot.labels.get(L.NYDUS_IMAGE, boot.name))
            except NydusError as exc:
                log.warning("unmounting image %s: %s", boot.name, exc)

    def _forget_image(self, boot: Snapshot) -> None:
        """The bootstrap snapshot is gone: unmount and drop the cached blobs no other image uses."""
        with self._mount_lock:
            try:
                self._stop_image_daemon(self.image_name(boot))
            except NydusError as exc:
                log.warning("unmounting image %s: %s", boot.name, exc)
        mine = self._blob_ids(self.bootstrap_path(boot.id))
        others: set[str] = set()
        for s in self.meta.all():
            if s.labels.get(L.NYDUS_BOOTSTRAP) == "true" and s.id != boot.id:
                others |= self._blob_ids(self.bootstrap_path(s.id))
        freed = 0
        for blob_id in mine - others:
            for f in self.cache_dir.glob(f"{blob_id}*"):
                try:
                    freed += f.stat().st_size
                    f.unlink()
                except OSError:
                    pass
        if freed:
            log.info("freed %d bytes of blob cache of %s", freed, boot.labels.get(L.NYDUS_IMAGE, boot.name))

    @staticmethod
    def _check_bootstrap(path: Path, what: str) -> None:
        """Open the fetched bootstrap once, so that a bad one fails the pull, not the container."""
        from nydus_core.rafs.image import open_image

        try:
            img = open_image(str(path))
        except (NydusError, OSError, ValueError) as exc:
            raise NydusError(f"{what}: not a usable RAFS bootstrap: {exc}") from None
        close = getattr(img, "close", None)
        if close:
            close()

    @staticmethod
    def _blob_ids(bootstrap: Path) -> set[str]:
        from nydus_core.rafs.image import open_image

        if not bootstrap.exists():
            return set()
        try:
            img = open_image(str(bootstrap))
        except (NydusError, OSError) as exc:
            log.warning("%s: %s", bootstrap, exc)
            return set()
        try:
            return {b.blob_id for b in img.blobs}
        finally:
            close = getattr(img, "close", None)
            if close:
                close()

