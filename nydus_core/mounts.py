"""What is mounted where, read from ``/proc/self/mountinfo``, and detaching a mount.

- :func:`read_mountinfo` parses the mount table into :class:`MountEntry` records (octal escapes such
  as ``\\040`` for a space decoded, see proc(5));
- :func:`mounts_at`, :func:`is_mountpoint` and :func:`mounts_under` look paths up in it;
- :func:`force_unmount` lazily detaches whatever is mounted at a path (a FUSE mount whose daemon
  died answers ``ENOTCONN`` to everything until it is detached).

Paths are compared as given after ``os.path.abspath`` (no symlink resolution: the kernel's table
holds the resolved path, so resolve first when the caller's path may hold symlinks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

__all__ = [
    "MOUNTINFO",
    "MountEntry",
    "force_unmount",
    "is_mountpoint",
    "mounts_at",
    "mounts_under",
    "parse_mountinfo",
    "read_mountinfo",
    "unescape",
]

#: The mount table of this process's mount namespace.
MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo``."""

    mount_id: int
    parent_id: int
    #: ``major:minor`` of the mounted filesystem (the key of ``/sys/class/bdi/<device>``).
    device: str
    #: The directory of the filesystem that is the root of this mount.
    root: str
    mountpoint: str
    options: str
    fstype: str
    source: str
    super_options: str


def unescape(field: str) -> str:
    """Decode mountinfo's octal escapes (``\\040`` for a space, ``\\011`` tab, ``\\012``, ``\\134``)."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse mountinfo ``text`` (proc(5) format) into entries, in table order (oldest first).

    Lines that do not have the format (too few fields, no `` - `` separator) are skipped.
    """
    entries = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        rest = right.split()
        if not sep or len(fields) < 6 or not rest:
            continue
        try:
            mount_id, parent_id = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        entries.append(MountEntry(
            mount_id=mount_id,
            parent_id=parent_id,
            device=fields[2],
            root=unescape(fields[3]),
            mountpoint=unescape(fields[4]),
            options=fields[5],
            fstype=rest[0],
            source=unescape(rest[1]) if len(rest) > 1 else "",
            super_options=rest[2] if len(rest) > 2 else "",
        ))
    return entries


def read_mountinfo(path: str = MOUNTINFO) -> list[MountEntry]:
    """Return the entries of the mount table at ``path`` (empty when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return parse_mountinfo(fh.read())
    except OSError:
        return []


def mounts_at(path: str | os.PathLike[str]) -> list[MountEntry]:
    """Return every mount stacked at ``path``, oldest first (the last one is what is visible)."""
    target = os.path.abspath(path)
    return [e for e in read_mountinfo() if e.mountpoint == target]


def is_mountpoint(path: str | os.PathLike[str]) -> bool:
    """Return whether something is mounted at ``path``."""
    return bool(mounts_at(path))


def mounts_under(path: str | os.PathLike[str]) -> list[str]:
    """Return the mountpoints strictly below ``path``, deepest first (the order to unmount them in)."""
    prefix = os.path.abspath(path).rstrip("/") + "/"
    found = {e.mountpoint for e in read_mountinfo() if e.mountpoint.startswith(prefix)}
    return sorted(found, key=lambda p: (-p.count("/"), p))


def force_unmount(mountpoint: str | os.PathLike[str], *, attempts: int = 4) -> bool:
    """Lazily detach every mount stacked at ``mountpoint``; return whether none is left.

    A FUSE mount is detached with ``fusermount3 -u -z`` (which works for its unprivileged owner
    too), anything else, or a FUSE mount ``fusermount3`` could not detach, with ``umount -l``.
    Errors are not raised: the return value says whether the path is free now.
    """
    mp = os.path.abspath(mountpoint)
    for _ in range(attempts):
        stack = mounts_at(mp)
        if not stack:
            return True
        if stack[-1].fstype.startswith("fuse") and shutil.which("fusermount3"):
            subprocess.run(["fusermount3", "-u", "-z", mp], capture_output=True, check=False)
            if len(mounts_at(mp)) < len(stack):
                continue
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
    return not mounts_at(mp)
