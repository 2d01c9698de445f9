"""What an ``erofs``-driver daemon hands over on failover (:mod:`.failover`), and how a new daemon
continues from it.

The state (JSON): the blob-device directory and FUSE connection, the negotiated protocol minor,
every mounted image (daemon mountpoint, bootstrap, config as JSON v1, prefetch list), every blob
device (name, inode number, size, users as (mountpoint, blob index)) and every EROFS mount (target,
mount id, its devices, the blobs whose complete cache file is the device). The kernel's EROFS mounts
and open device files stay as they are: the new daemon only has to answer the same inode numbers.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nydus_core.config import parse_config

from .blobdevfs import BlobDevice
from .failover import fetch_state, notify_resend, send_state
from .fuse_session import FuseSession
from .instance import open_instance

if TYPE_CHECKING:
    from .erofs_daemon import ErofsDaemon

log = logging.getLogger("nydusd")

__all__ = ["adopt", "publish", "snapshot"]


def snapshot(d: ErofsDaemon) -> dict[str, Any]:
    """The state a new daemon needs to continue ``d``'s FUSE connection."""
    session = d._session
    where = {id(inst.pipeline): mp for mp, inst in d.vfs.mounts.items()}
    devices = []
    for dev in d.blobfs.devices():
        users = [[where[id(p)], i] for p, i in dev.sources if id(p) in where]
        devices.append({"name": dev.name, "ino": dev.ino, "size": dev.size, "users": users})
    return {
        "version": 1,
        "pid": os.getpid(),
        "blobdir": d.blobdir,
        "root_id": d._root_id,
        "conn": d._conn,
        "minor": session.minor if session is not None else 0,
        "next_ino": d.blobfs.next_ino,
        "images": [{"mountpoint": mp, "bootstrap": inst.bootstrap, "config": inst.config.to_v1_dict(),
                    "prefetch_files": list(inst.prefetch_files)} for mp, inst in d.vfs.mounts.items()],
        "devices": devices,
        "kmounts": [{"mountpoint": mp, "target": km.target, "mount_id": km.mount_id,
                     "devices": [dv.name for dv in km.devices], "direct_ids": list(km.direct_ids)}
                    for mp, km in d.kmounts.items()],
    }


def publish(d: ErofsDaemon) -> None:
    """Send ``d``'s state and FUSE descriptor to its supervisor (no-op without ``--supervisor``)."""
    sup = d.settings.supervisor
    if not sup or d._fuse_fd < 0:
        return
    send_state(sup, d.settings.daemon_id, snapshot(d), d._fuse_fd)
    log.info("state and FUSE descriptor sent to supervisor %s", sup)


def _end_previous(pid: int, timeout: float = 10.0) -> None:
    """A live upgrade: the daemon that sent the state still runs. Kill it and wait until it is gone,
    so that nothing it read stays unanswered after the re-send (a dead one is left as it is)."""
    if pid <= 0 or pid == os.getpid():
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            break
        if state in ("Z", "X"):
            break
        time.sleep(0.02)
    log.info("previous daemon (pid %d) ended for the upgrade", pid)


def adopt(d: ErofsDaemon, policy: str) -> None:
    """Take over the connection held by ``d``'s supervisor: reopen the images, rebuild the blob
    devices with their inode numbers, serve the live connection, then apply the failover policy."""
    from .erofs_daemon import KernelMount

    sup = d.settings.supervisor
    if not sup:
        raise OSError("takeover needs --supervisor")
    state, fd = fetch_state(sup, d.settings.daemon_id)
    _end_previous(int(state.get("pid") or 0))
    try:
        insts = {}
        for img in state["images"]:
            mp = img["mountpoint"]
            inst = d.vfs.mounts.get(mp)  # opened at start-up from the same -B/-C flags
            if inst is None or inst.bootstrap != img["bootstrap"]:
                cfg = parse_config(img["config"], source=f"takeover of {mp}")
                inst = open_instance(img["bootstrap"], cfg, prefetch_files=img.get("prefetch_files") or ())
                d.vfs.attach(mp, inst)
                inst.attach_id()
            insts[mp] = inst
        by_name: dict[str, BlobDevice] = {}
        for dev in state["devices"]:
            sources = [(insts[mp].pipeline, int(i)) for mp, i in dev["users"] if mp in insts]
            by_name[dev["name"]] = d.blobfs.restore(dev["name"], int(dev["ino"]), int(dev["size"]), sources)
        d.blobfs.next_ino = max(int(state["next_ino"]), d.blobfs.next_ino)
        for km in state["kmounts"]:
            inst = insts[km["mountpoint"]]
            pins = []
            for bid in km["direct_ids"]:
                idx = next(i for i in range(len(inst.image.blobs)) if inst.pipeline.blob_id(i) == bid)
                path = inst.pipeline.complete_blob_file(idx)
                if path is not None:
                    pfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    fcntl.flock(pfd, fcntl.LOCK_SH)
                    pins.append(pfd)
                d.direct[bid] = d.direct.get(bid, 0) + 1
            d.kmounts[km["mountpoint"]] = KernelMount(km["target"], inst, [by_name[n] for n in km["devices"]],
                                                      int(km["mount_id"]), pins, list(km["direct_ids"]))
    except BaseException:
        os.close(fd)
        raise
    d.blobdir, d._conn, d._fuse_fd = state["blobdir"], int(state["conn"]), fd
    d._root_id = int(state.get("root_id") or 0)
    session = FuseSession(fd, d.blobfs, threads=max(2, d.settings.threads), initialised=True,
                          minor=int(state["minor"]) or 31)
    session.flush_resent = policy == "flush"
    d._session = session
    session.start()
    if policy in ("resend", "flush") and notify_resend(fd):
        log.info("asked the kernel to re-send the requests in flight (failover policy %s)", policy)
    log.info("took over %s with %d image(s) and %d blob device(s) from supervisor %s", d.blobdir,
             len(insts), len(by_name), sup)
