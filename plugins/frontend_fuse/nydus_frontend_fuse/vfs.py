"""The daemon's virtual filesystem: which RAFS instance answers for which FUSE inode.

One daemon serves either one image at ``/`` (``nydusd --bootstrap``) or a *pseudo root* whose
sub-paths get images mounted through the HTTP API (``POST /api/v1/mount?mountpoint=/sub``), as
nydus-snapshotter drives a shared daemon.

FUSE inode numbers are 64-bit: the top 16 bits are the instance's *slot*, the low 48 bits the
image's own inode number (v5 ``i_ino``, v6 nid), so hard links share one FUSE inode and lookups
need no table. Slot 0 is the image mounted at ``/`` (its root swapped with inode 1, which FUSE
reserves for the root) or, with no such image, the pseudo directories. Slots are never reused, so
an inode of an unmounted image can never be mistaken for one of a later image.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyfuse3
from pyfuse3 import FUSEError

if TYPE_CHECKING:
    from .instance import RafsInstance

SLOT_SHIFT = 48
LOCAL_MASK = (1 << SLOT_SHIFT) - 1
MAX_SLOT = (1 << 16) - 1
ROOT = pyfuse3.ROOT_INODE


@dataclass(eq=False)
class PseudoDir:
    """A directory of the pseudo root (``/`` and the parents of API mountpoints)."""

    ino: int
    parent: int
    children: dict[bytes, PseudoDir | RafsInstance] = field(default_factory=dict)
    mtime_ns: int = 0


class Vfs:
    """Maps FUSE inodes to (instance, image inode) and keeps the mount table."""

    def __init__(self) -> None:
        self.slots: dict[int, RafsInstance] = {}  # live and retired (still referenced) instances
        self.mounts: dict[str, RafsInstance] = {}  # mountpoint ("/" or "/a/b") -> live instance
        self.root_instance: RafsInstance | None = None
        self.pseudo: dict[int, PseudoDir] = {ROOT: PseudoDir(ROOT, ROOT, mtime_ns=_now_ns())}
        self._next_slot = 1
        self._next_pseudo = 2

    # -- inode translation (hot path) ----------------------------------------------------------

    def resolve(self, ino: int) -> tuple[RafsInstance, int]:
        """Return ``(instance, image inode)`` for a FUSE inode of an image; ENOENT otherwise."""
        slot = ino >> SLOT_SHIFT
        inst = self.slots.get(slot)
        if inst is None:
            raise FUSEError(errno.ESTALE if slot else errno.ENOENT)
        if slot:
            return inst, ino & LOCAL_MASK
        # slot 0: the image at "/", root swapped with inode 1
        if ino == ROOT:
            return inst, inst.root_ino
        if ino == inst.root_ino:
            return inst, ROOT
        return inst, ino

    @staticmethod
    def to_fuse(inst: RafsInstance, local: int) -> int:
        """Return the FUSE inode of image inode ``local`` of ``inst``."""
        slot = inst.slot
        if slot:
            if local > LOCAL_MASK:
                raise FUSEError(errno.EOVERFLOW)
            return (slot << SLOT_SHIFT) | local
        if local == inst.root_ino:
            return ROOT
        if local == ROOT:
            return inst.root_ino
        return local

    def is_pseudo(self, ino: int) -> bool:
        """Return whether ``ino`` is a pseudo directory (only when no image is mounted at ``/``)."""
        return self.root_instance is None and ino in self.pseudo

    # -- mount table ---------------------------------------------------------------------------

    @staticmethod
    def normalize(mountpoint: str) -> str:
        """Return the canonical form of an API mountpoint (absolute, no ``.``/``..``/trailing ``/``)."""
        if not mountpoint or not mountpoint.startswith("/"):
            raise ValueError(f"mountpoint '{mountpoint}' must be an absolute path inside the daemon")
        parts = [p for p in mountpoint.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"mountpoint '{mountpoint}' must not contain '..'")
        return "/" + "/".join(parts)

    def attach(self, mountpoint: str, inst: RafsInstance) -> tuple[int, bytes] | None:
        """Mount ``inst`` at ``mountpoint``; return the (pseudo parent, name) entry to invalidate."""
        mp = self.normalize(mountpoint)
        if mp in self.mounts:
            raise FileExistsError(f"mountpoint {mp} already has an image mounted")
        if mp == "/":
            if self.mounts or self.pseudo[ROOT].children or 0 in self.slots or self._next_slot > 1:
                raise FileExistsError("an image can be mounted at / only once, in a daemon that has "
                                      "no other mounts")
            inst.slot = 0
            inst.mountpoint = mp
            self.slots[0] = inst
            self.root_instance = inst
            self.mounts[mp] = inst
            return None
        if self.root_instance is not None:
            raise FileExistsError(f"cannot mount at {mp}: an image is mounted at / (start nydusd "
                                  "without --bootstrap to mount images under sub-paths)")
        if self._next_slot > MAX_SLOT:
            raise OSError(errno.ENOSPC, "no more instance slots in this daemon")
        parts = [os.fsencode(p) for p in mp.strip("/").split("/")]
        d = self.pseudo[ROOT]
        for part in parts[:-1]:
            child = d.children.get(part)
            if child is None:
                child = PseudoDir(self._next_pseudo, d.ino, mtime_ns=_now_ns())
                self._next_pseudo += 1
                self.pseudo[child.ino] = child
                d.children[part] = child
                d.mtime_ns = _now_ns()
            elif not isinstance(child, PseudoDir):
                raise FileExistsError(f"cannot mount at {mp}: a parent path is an image mountpoint")
            d = child
        if parts[-1] in d.children:
            raise FileExistsError(f"mountpoint {mp} is already in use")
        inst.slot = self._next_slot
        self._next_slot += 1
        inst.mountpoint = mp
        self.slots[inst.slot] = inst
        self.mounts[mp] = inst
        d.children[parts[-1]] = inst
        d.mtime_ns = _now_ns()
        return d.ino, parts[-1]

    def detach(self, mountpoint: str) -> tuple[RafsInstance, tuple[int, bytes] | None]:
        """Unmount the image at ``mountpoint``; return it and the entry to invalidate.

        The instance stays reachable by its slot (open files keep reading) until :meth:`reap`
        finds it unreferenced."""
        mp = self.normalize(mountpoint)
        if mp == "/":
            raise PermissionError("the image at / cannot be unmounted or replaced; stop the daemon "
                                  "(PUT /api/v1/daemon/exit) instead")
        inst = self.mounts.pop(mp, None)
        if inst is None:
            raise FileNotFoundError(f"no image is mounted at {mp}")
        inst.retired = True
        parts = [os.fsencode(p) for p in mp.strip("/").split("/")]
        d = self.pseudo[ROOT]
        for part in parts[:-1]:
            nxt = d.children[part]
            assert isinstance(nxt, PseudoDir)
            d = nxt
        del d.children[parts[-1]]
        d.mtime_ns = _now_ns()
        return inst, (d.ino, parts[-1])

    def reap(self) -> list[RafsInstance]:
        """Drop retired instances no longer referenced by the kernel or open files; return them."""
        dead = [i for i in self.slots.values() if i.retired and i.refs <= 0 and i.open_handles <= 0]
        for inst in dead:
            self.slots.pop(inst.slot, None)
        return dead

    def instances(self) -> list[RafsInstance]:
        """Return the live (mounted) instances, by mountpoint."""
        return [self.mounts[k] for k in sorted(self.mounts)]


def _now_ns() -> int:
    return time.time_ns()
