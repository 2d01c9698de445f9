"""Mount a RAFS v6 bootstrap with the kernel's EROFS driver, file-backed (Linux 6.12+).

:func:`mount_erofs` uses the new mount API (``fsopen``/``fsconfig``/``fsmount``/``move_mount``,
through ``syscall(2)``): the source is the bootstrap file and each extra device a ``device=``
string of its own, so 64 layers with long paths never meet ``mount(2)``'s one-page option limit.
A regular file as source makes EROFS use its file-backed mode (no loop device).
:func:`erofs_unavailable` says in one line why this host cannot do it (no ``CAP_SYS_ADMIN``, no
EROFS in the kernel), naming ``--fs-driver fusedev`` as the way out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import subprocess
from collections.abc import Sequence

from nydus_core.mounts import mounts_at

__all__ = ["FUSEDEV_HINT", "erofs_unavailable", "mount_erofs", "mount_id", "mount_tmpfs"]

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.syscall.restype = ctypes.c_long

# generic syscall numbers (the same on x86_64 and aarch64)
SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 429, 430, 431, 432
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_RDONLY = 1
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100
CAP_SYS_ADMIN = 21
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8

#: appended to every refusal: how to serve the image anyway
FUSEDEV_HINT = "use --fs-driver fusedev"


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def _erofs_registered() -> bool:
    try:
        with open("/proc/filesystems") as fh:
            return any(line.split()[-1:] == ["erofs"] for line in fh)
    except OSError:
        return False


def erofs_unavailable() -> str | None:
    """Return why the ``erofs`` driver cannot mount here (one line ending in the fusedev hint),
    or None. Loads the ``erofs`` module when it is not loaded yet."""
    if not _has_cap_sys_admin():
        return f"the erofs driver needs CAP_SYS_ADMIN to mount (run as root); {FUSEDEV_HINT}"
    if not os.path.exists("/dev/fuse"):
        return f"the erofs driver needs /dev/fuse for its blob devices; {FUSEDEV_HINT}"
    if not _erofs_registered():
        subprocess.run(["modprobe", "erofs"], capture_output=True, check=False)
        if not _erofs_registered():
            return f"this kernel has no EROFS support (no 'erofs' in /proc/filesystems); {FUSEDEV_HINT}"
    return None


def _syscall(nr: int, *args: object) -> int:
    rc = int(_libc.syscall(nr, *args))
    if rc < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return rc


def _fs_messages(fsfd: int) -> str:
    """Drain the kernel's messages about a filesystem context (``e erofs: ...`` lines)."""
    out: list[str] = []
    os.set_blocking(fsfd, False)
    while True:
        try:
            msg = os.read(fsfd, 1024)
        except OSError:
            break
        if not msg:
            break
        out.append(msg.decode(errors="replace").strip())
    return "; ".join(out)


def mount_erofs(source: str, devices: Sequence[str], target: str) -> None:
    """Mount bootstrap ``source`` read-only at ``target`` with EROFS, ``devices`` (files, in
    blob-table order) as its extra devices. Raises OSError with the kernel's own message."""
    fsfd = _syscall(SYS_FSOPEN, b"erofs", FSOPEN_CLOEXEC)
    try:
        try:
            _syscall(SYS_FSCONFIG, fsfd, FSCONFIG_SET_STRING, b"source", os.fsencode(source), 0)
            for dev in devices:
                _syscall(SYS_FSCONFIG, fsfd, FSCONFIG_SET_STRING, b"device", os.fsencode(dev), 0)
            _syscall(SYS_FSCONFIG, fsfd, FSCONFIG_SET_FLAG, b"ro", None, 0)
            _syscall(SYS_FSCONFIG, fsfd, FSCONFIG_CMD_CREATE, None, None, 0)
        except OSError as exc:
            detail = _fs_messages(fsfd)
            if exc.errno == errno.ENOTBLK:
                detail = ("this kernel's EROFS cannot mount a regular file (file-backed mounts need "
                          "Linux 6.12+ with CONFIG_EROFS_FS_BACKED_BY_FILE)"
                          + (f": {detail}" if detail else ""))
            raise OSError(exc.errno, detail or exc.strerror) from None
        mfd = _syscall(SYS_FSMOUNT, fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY)
        try:
            _syscall(SYS_MOVE_MOUNT, mfd, b"", AT_FDCWD, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH)
        finally:
            os.close(mfd)
    finally:
        os.close(fsfd)


def mount_tmpfs(target: str) -> None:
    """Mount a small tmpfs (mode 0755, 1 MiB, nosuid, nodev, noexec) at ``target``."""
    rc = _libc.mount(b"nydusd", os.fsencode(target), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     b"mode=0755,size=1m")
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def mount_id(target: str) -> int | None:
    """Return the id (``/proc/self/mountinfo``'s first field) of the newest mount at ``target``."""
    found = mounts_at(os.path.abspath(target))
    return found[-1].mount_id if found else None
