"""What a non-root nydusd needs before it can mount, checked up front so the error names the setting.

A user who is not root mounts through libfuse's setuid helper ``fusermount3``, and libfuse opens
``/dev/fuse`` itself first, so the user needs: read-write access to ``/dev/fuse``; ``fusermount3``
on ``PATH``; write access to the mountpoint; and, for ``allow_other`` (nydusd's default, so that
other users such as a container's processes can use the mount), ``user_allow_other`` in
``/etc/fuse.conf``. ``--no-allow-other`` drops the last: then only the user running nydusd may use
the mount (the kernel refuses everyone else, root included).
"""

from __future__ import annotations

import os
import shutil
import stat

from nydus_core.errors import UsageError

__all__ = ["FUSE_CONF", "FUSE_DEVICE", "check_unprivileged_mount", "user_allow_other"]

FUSE_DEVICE = "/dev/fuse"
FUSE_CONF = "/etc/fuse.conf"


def user_allow_other(conf: str = FUSE_CONF) -> bool:
    """Return whether ``conf`` has the ``user_allow_other`` line (as fusermount3 reads it)."""
    try:
        with open(conf, encoding="utf-8", errors="replace") as fh:
            return any(line.strip() == "user_allow_other" for line in fh)
    except OSError:
        return False


def _describe(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "unreadable"
    return f"mode {stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}:{st.st_gid}"


def check_unprivileged_mount(mountpoint: str, *, allow_other: bool, device: str = FUSE_DEVICE,
                             conf: str = FUSE_CONF) -> None:
    """Raise UsageError naming what is missing when this (non-root) process cannot mount FUSE at
    ``mountpoint`` with the given ``allow_other``; do nothing for root."""
    if os.geteuid() == 0:
        return
    uid = os.geteuid()
    if not os.path.exists(device):
        raise UsageError(f"{device} is missing: load the fuse module (modprobe fuse) or, in a "
                         "container, pass the device in")
    if not os.access(device, os.R_OK | os.W_OK):
        raise UsageError(f"{device}: permission denied for uid {uid} ({_describe(device)}): a non-root "
                         f"nydusd needs read-write access to {device} (its usual mode is 0666: "
                         f"chmod 0666 {device}), or run nydusd as root")
    if shutil.which("fusermount3") is None:
        raise UsageError("fusermount3 not found on PATH: a non-root nydusd mounts through it "
                         "(install the fuse3 package)")
    if not os.access(mountpoint, os.W_OK):
        raise UsageError(f"{mountpoint}: uid {uid} may not write to the mountpoint "
                         f"({_describe(mountpoint)}); fusermount3 mounts only on a directory the user "
                         "can write")
    if allow_other and not user_allow_other(conf):
        raise UsageError(f"allow_other needs 'user_allow_other' in {conf} for a non-root user (uid {uid}): "
                         "add that line, or pass --no-allow-other (then only this user can use the mount)")
