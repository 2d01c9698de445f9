"""What a RAFS v6 (EROFS) image can hold, checked on the tree (a directory source: during its walk).

Whatever the source (a tar can carry a 4096-byte name, a device major of 2,097,151, an mtime of
2**40 or a negative one), an entry the format cannot hold exactly is refused with one line naming
the layer, the entry and the limit -- never truncated, clamped or written into an image that the
kernel, ``fsck.erofs`` or our own reader would reject.
"""

from __future__ import annotations

import os
import stat

from ..errors import BuildError
from ..rafs.constants import EROFS_XATTR_PREFIXES
from ..rafs.model import TreeInode

#: longest file name (one path component) EROFS stores (the kernel's EROFS_NAME_LEN)
MAX_NAME = 255
#: device numbers as EROFS stores them (the kernel's new_encode_dev in 32 bits)
MAX_DEV_MAJOR = (1 << 12) - 1
MAX_DEV_MINOR = (1 << 20) - 1
#: uid, gid: 32 bits in an extended inode
MAX_ID = (1 << 32) - 1
#: file size: the kernel's MAX_LFS_FILESIZE
MAX_FILE_SIZE = (1 << 63) - 1
#: mtime seconds: an unsigned 64-bit field (a time before 1970 cannot be stored)
MAX_MTIME = (1 << 64) - 1
#: symlink target length (PATH_MAX)
MAX_SYMLINK = 4096
#: xattr name after its prefix, and value (e_name_len is 8 bits, e_value_size 16 bits)
MAX_XATTR_NAME = 255
MAX_XATTR_VALUE = 65535
#: all xattrs of one inode: i_xattr_icount is 16 bits, counting 4-byte units after a 12-byte header
MAX_XATTR_AREA = 12 + (65535 - 1) * 4


def _xattr_problem(xattrs: dict[bytes, bytes]) -> str | None:
    area = 12
    for name, value in xattrs.items():
        suffix = next((name[len(p):] for p in EROFS_XATTR_PREFIXES.values() if name.startswith(p)), None)
        if suffix is None:
            return f"xattr {name!r} has no prefix EROFS stores (user., trusted., security., ...)"
        if len(suffix) > MAX_XATTR_NAME:
            return f"xattr name of {len(suffix)} bytes after its prefix exceeds the limit of {MAX_XATTR_NAME}"
        if len(value) > MAX_XATTR_VALUE:
            return f"xattr {name!r} value of {len(value)} bytes exceeds the limit of {MAX_XATTR_VALUE}"
        entry = 4 + len(suffix) + len(value)
        area += entry + (-entry % 4)
    if area > MAX_XATTR_AREA:
        return f"xattrs take {area} bytes, over the per-inode limit of {MAX_XATTR_AREA}"
    return None


def inode_problem(node: TreeInode) -> str | None:
    """Return why the format cannot hold ``node``'s attributes exactly (None when it can)."""
    if not 0 <= node.uid <= MAX_ID or not 0 <= node.gid <= MAX_ID:
        return f"uid/gid {node.uid}/{node.gid} outside the format's range 0..{MAX_ID}"
    if not 0 <= node.mtime <= MAX_MTIME:
        return (f"mtime {node.mtime} outside the format's range 0..{MAX_MTIME} "
                "(seconds since 1970, unsigned)")
    if not 0 <= node.mtime_nsec < 1_000_000_000:
        return f"mtime nanoseconds {node.mtime_nsec} outside 0..999999999"
    if stat.S_ISCHR(node.mode) or stat.S_ISBLK(node.mode):
        major, minor = os.major(node.rdev), os.minor(node.rdev)
        if major > MAX_DEV_MAJOR or minor > MAX_DEV_MINOR:
            return (f"device number {major}:{minor} exceeds what the format holds "
                    f"(major <= {MAX_DEV_MAJOR}, minor <= {MAX_DEV_MINOR})")
    if node.is_reg and not 0 <= node.size <= MAX_FILE_SIZE:
        return f"size {node.size} exceeds the format's limit of {MAX_FILE_SIZE}"
    if node.is_symlink and not 0 < len(node.symlink or b"") <= MAX_SYMLINK:
        return f"symlink target of {len(node.symlink or b'')} bytes outside 1..{MAX_SYMLINK}"
    if node.xattrs:
        return _xattr_problem(node.xattrs)
    return None


def name_problem(name: bytes) -> str | None:
    """Return why ``name`` cannot be a directory entry of the image (None when it can)."""
    if not name or name in (b".", b".."):
        return f"name {name!r} is not a file name"
    if len(name) > MAX_NAME:
        return f"name of {len(name)} bytes exceeds the format's limit of {MAX_NAME}"
    if b"/" in name or b"\0" in name:
        return f"name {name!r} holds '/' or NUL"
    return None


def _shown_name(base: bytes, name: bytes) -> str:
    return os.fsdecode(base + name[:64]) + ("..." if len(name) > 64 else "")


def check_entry(layer: str, parent: bytes, name: bytes, node: TreeInode) -> None:
    """Raise the :class:`BuildError` :func:`check_tree` raises for entry ``name`` of the directory at
    image path ``parent`` (``b"/"`` for the root), when the format cannot hold it. A source walk
    calls it for the entries that may be out of range, instead of a second pass over the tree."""
    base = parent if parent.endswith(b"/") else parent + b"/"
    problem = name_problem(name)
    if problem is not None:
        raise BuildError(f"{layer}: entry {_shown_name(base, name)}: {problem}")
    problem = inode_problem(node)
    if problem is not None:
        raise BuildError(f"{layer}: entry {os.fsdecode(base + name)}: {problem}")


def check_tree(root: TreeInode, layer: str) -> None:
    """Raise :class:`BuildError` for the first entry of ``root`` the format cannot hold:
    ``"LAYER: entry /PATH: WHAT exceeds the limit ..."``. Iterative (any depth); each inode once."""
    seen: set[int] = set()
    stack: list[tuple[bytes, TreeInode]] = [(b"/", root)]
    while stack:
        path, node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            problem = inode_problem(node)
            if problem is not None:
                raise BuildError(f"{layer}: entry {os.fsdecode(path)}: {problem}")
            if node.is_dir:
                base = path if path.endswith(b"/") else path + b"/"
                for name, child in node.children.items():
                    problem = name_problem(name)
                    if problem is not None:
                        raise BuildError(f"{layer}: entry {_shown_name(base, name)}: {problem}")
                    stack.append((base + name, child))
