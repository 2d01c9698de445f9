"""Image layers for merge/whiteout tests, and the kernel's overlayfs as the reference for their union.

:func:`make_layer` writes one layer directory from a small spec, either with overlayfs whiteouts
(char device 0/0, ``trusted.overlay.opaque=y``; root only) or with OCI whiteouts (``.wh.NAME``,
``.wh..wh..opq``; any user). :func:`overlay_mount` mounts overlayfs-format layers read-only, so a
test can compare a merged RAFS image with what the kernel shows for the same stack.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["OPAQUE", "WHITEOUT", "make_layer", "overlay_mount", "overlay_unavailable"]

#: spec value: remove this path from the layers below
WHITEOUT = object()
#: spec value: this directory hides everything the layers below have in it
OPAQUE = object()


def make_layer(root: str | os.PathLike[str], spec: Mapping[str, object], whiteouts: str = "oci") -> Path:
    """Create a layer directory. ``spec`` maps relative paths to ``bytes`` (file), ``None``
    (directory), ``("->", target)`` (symlink), ``("link", other)`` (hard link to an earlier path),
    :data:`WHITEOUT` or :data:`OPAQUE` (a directory that is opaque). ``whiteouts`` is ``"oci"`` or
    ``"overlayfs"``. Parent directories are created as needed; mtimes are fixed (deterministic)."""
    r = Path(root)
    r.mkdir(parents=True, exist_ok=True)
    for rel, value in spec.items():
        p = r / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if value is None:
            p.mkdir(exist_ok=True)
        elif value is OPAQUE:
            p.mkdir(exist_ok=True)
            if whiteouts == "oci":
                (p / ".wh..wh..opq").write_bytes(b"")
            else:
                os.setxattr(p, "trusted.overlay.opaque", b"y")
        elif value is WHITEOUT:
            if whiteouts == "oci":
                (p.parent / f".wh.{p.name}").write_bytes(b"")
            else:
                os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        elif isinstance(value, tuple) and value[0] == "->":
            os.symlink(value[1], p)
        elif isinstance(value, tuple) and value[0] == "link":
            os.link(r / value[1], p)
        elif isinstance(value, bytes):
            p.write_bytes(value)
        else:
            raise ValueError(f"bad layer spec for {rel}: {value!r}")
    for p in [*sorted(r.rglob("*"), key=lambda q: (-len(q.parts), str(q))), r]:
        os.utime(p, (1_650_000_000, 1_650_000_000), follow_symlinks=False)
    return r


def overlay_unavailable() -> str | None:
    """Return why an overlayfs mount cannot be done here, or None."""
    if os.geteuid() != 0:
        return "mounting overlayfs needs root"
    try:
        if "overlay" not in Path("/proc/filesystems").read_text():
            return "the kernel has no overlayfs"
    except OSError:
        return "cannot read /proc/filesystems"
    return None


@contextlib.contextmanager
def overlay_mount(lowers_bottom_first: Sequence[str | os.PathLike[str]], mountpoint: str | os.PathLike[str]
                  ) -> Iterator[Path]:
    """Mount a read-only overlayfs of the given layer directories (lowest first)."""
    mnt = Path(mountpoint)
    mnt.mkdir(parents=True, exist_ok=True)
    lower = ":".join(os.fspath(p) for p in reversed(lowers_bottom_first))
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={lower}", os.fspath(mnt)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"mount -t overlay failed: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", os.fspath(mnt)], capture_output=True, check=False)
