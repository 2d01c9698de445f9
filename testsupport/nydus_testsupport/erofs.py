"""Check RAFS v6 images with the real EROFS implementations: ``fsck.erofs`` (erofs-utils) and the kernel.

``fsck_extract`` runs ``fsck.erofs --device=BLOBIMG... --extract=DIR BOOTSTRAP``; ``erofs_mount`` loop-
mounts the bootstrap with the uncompressed blob images as extra devices (root only). Both take the
blob images :func:`nydus_testsupport.blob_images.make_blob_images` writes, in blob-table order.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["erofs_mount", "fsck_extract", "kernel_mount_unavailable", "fsck_unavailable"]


def fsck_unavailable() -> str | None:
    """Return why ``fsck.erofs`` cannot be used here, or None."""
    return None if shutil.which("fsck.erofs") else "fsck.erofs (erofs-utils) is not installed"


def kernel_mount_unavailable() -> str | None:
    """Return why a kernel EROFS loop mount cannot be done here, or None."""
    if os.geteuid() != 0:
        return "mounting EROFS needs root"
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control (loop devices unavailable)"
    try:
        if "erofs" not in Path("/proc/filesystems").read_text():
            subprocess.run(["modprobe", "erofs"], capture_output=True, check=False)
            if "erofs" not in Path("/proc/filesystems").read_text():
                return "the kernel has no EROFS support"
    except OSError:
        return "cannot read /proc/filesystems"
    if not shutil.which("losetup"):
        return "losetup is not installed"
    return None


def fsck_extract(bootstrap: str | os.PathLike[str], devices: Sequence[str | os.PathLike[str]],
                 out_dir: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """Run ``fsck.erofs --extract`` (raises CalledProcessError with its output on failure)."""
    cmd = ["fsck.erofs", *(f"--device={os.fspath(d)}" for d in devices), f"--extract={os.fspath(out_dir)}",
           os.fspath(bootstrap)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


def _losetup(path: str | os.PathLike[str]) -> str:
    proc = subprocess.run(["losetup", "-f", "--show", "-r", os.fspath(path)], capture_output=True, text=True,
                          check=True)
    return proc.stdout.strip()


@contextlib.contextmanager
def erofs_mount(bootstrap: str | os.PathLike[str], devices: Sequence[str | os.PathLike[str]],
                mountpoint: str | os.PathLike[str]) -> Iterator[Path]:
    """Loop-mount ``bootstrap`` read-only with ``devices`` as EROFS extra devices; unmount and
    detach every loop device on exit, whatever happens."""
    mnt = Path(mountpoint)
    mnt.mkdir(parents=True, exist_ok=True)
    loops: list[str] = []
    mounted = False
    try:
        main = _losetup(bootstrap)
        loops.append(main)
        extra = []
        for d in devices:
            extra.append(_losetup(d))
            loops.append(extra[-1])
        opts = ",".join(["ro", *(f"device={x}" for x in extra)])
        proc = subprocess.run(["mount", "-t", "erofs", "-o", opts, main, os.fspath(mnt)], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"mount -t erofs failed: {proc.stderr.strip()}")
        mounted = True
        yield mnt
    finally:
        if mounted:
            subprocess.run(["umount", os.fspath(mnt)], capture_output=True, check=False)
        for loop in reversed(loops):
            subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)
