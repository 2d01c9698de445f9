"""Checks and kernel tuning around the FUSE mountpoint (no FUSE request is ever sent from here).

- :func:`check_mountpoint` turns every reason a mount cannot start into one line that says what to
  do: missing directory, not a directory, already a mountpoint, or the "Transport endpoint is not
  connected" left by a daemon that was killed (cleaned with ``fusermount3 -u``).
- :func:`mount_device` finds our mount's ``major:minor`` (:mod:`nydus_core.mounts`) and
  :func:`set_readahead` raises the kernel's read-ahead for it through ``/sys/class/bdi``.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from nydus_core.errors import UsageError
from nydus_core.mounts import mounts_at

log = logging.getLogger("nydusd")


def check_mountpoint(path: str) -> str:
    """Return the absolute mountpoint after checking it can be mounted on; UsageError otherwise."""
    mp = os.path.abspath(path)
    try:
        st = os.stat(mp)
    except FileNotFoundError:
        raise UsageError(f"{path}: mountpoint does not exist (create the directory first)") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise UsageError(
                f"{path}: Transport endpoint is not connected: a FUSE daemon serving it has died; "
                f"clean it up with 'fusermount3 -u {mp}' and start again"
            ) from None
        raise UsageError(f"{path}: cannot use mountpoint: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path}: mountpoint is not a directory")
    existing = mounts_at(mp)
    if existing:
        top = existing[-1]
        raise UsageError(
            f"{path}: already a mountpoint ({top.source} type {top.fstype}); unmount it first "
            f"('fusermount3 -u {mp}' or 'umount {mp}')"
        )
    return mp


def mount_device(path: str) -> str | None:
    """Return the ``major:minor`` of the newest mount at ``path``, or None."""
    found = mounts_at(path)
    return found[-1].device if found else None


def set_readahead(path: str, kib: int) -> bool:
    """Set the kernel read-ahead (KiB) of the FUSE mount at ``path``; return whether it was set."""
    dev = mount_device(path)
    if dev is None or kib <= 0:
        return False
    knob = f"/sys/class/bdi/{dev}/read_ahead_kb"
    try:
        with open(knob, "w") as fh:
            fh.write(str(int(kib)))
    except OSError as exc:
        log.info("could not set read-ahead of %s via %s: %s", path, knob, exc.strerror)
        return False
    log.debug("read-ahead of %s set to %d KiB", path, kib)
    return True
