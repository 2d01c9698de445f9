"""Overlay one layer's tree on top of a lower tree, honouring whiteouts (OCI or overlayfs spec).

* ``oci``: ``.wh.NAME`` removes NAME of the lower layers; ``.wh..wh..opq`` makes its directory
  opaque (every lower entry of it disappears); other ``.wh..wh.*`` entries (AUFS metadata) are dropped.
* ``overlayfs``: a character device 0/0 named NAME removes NAME; a directory with xattr
  ``trusted.overlay.opaque`` (or ``user.overlay.opaque``) = ``y`` is opaque.
* ``none``: no markers; upper entries simply replace lower ones.

Whiteouts only hide lower entries; an entry of the same layer with the whiteout's name survives.
The markers themselves never appear in the result. An upper directory merges into a lower directory
(the upper's attributes win); anything else replaces the lower entry.
"""

from __future__ import annotations

import stat

from ..errors import UsageError
from ..rafs.model import TreeInode

OCI_WHITEOUT_PREFIX = b".wh."
OCI_OPAQUE = b".wh..wh..opq"
OCI_META_PREFIX = b".wh..wh."
OVERLAY_OPAQUE_XATTRS = (b"trusted.overlay.opaque", b"user.overlay.opaque")


def _check_spec(spec: str) -> None:
    if spec not in ("oci", "overlayfs", "none"):
        raise UsageError(f"invalid whiteout spec '{spec}': choose one of oci, overlayfs, none")


def is_marker(name: bytes, node: TreeInode, spec: str) -> bool:
    """Return whether this entry is a whiteout/opaque marker rather than a file."""
    if spec == "oci":
        return name.startswith(OCI_WHITEOUT_PREFIX)
    if spec == "overlayfs":
        return stat.S_ISCHR(node.mode) and node.rdev == 0
    return False


def is_opaque(directory: TreeInode, spec: str) -> bool:
    """Return whether ``directory`` of an upper layer hides every lower entry below it."""
    if spec == "oci":
        return OCI_OPAQUE in directory.children
    if spec == "overlayfs":
        return any(directory.xattrs.get(x) == b"y" for x in OVERLAY_OPAQUE_XATTRS)
    return False


def whited_out(name: bytes, node: TreeInode, spec: str) -> bytes | None:
    """Return the lower entry name this marker removes, or None."""
    if spec == "oci":
        if name.startswith(OCI_WHITEOUT_PREFIX) and not name.startswith(OCI_META_PREFIX):
            target = name[len(OCI_WHITEOUT_PREFIX):]
            return target or None
        return None
    if spec == "overlayfs" and stat.S_ISCHR(node.mode) and node.rdev == 0:
        return name
    return None


def _clean_attrs(node: TreeInode, spec: str) -> None:
    if spec == "overlayfs" and node.is_dir:
        for x in OVERLAY_OPAQUE_XATTRS:
            node.xattrs.pop(x, None)


def strip_markers(root: TreeInode, spec: str) -> None:
    """Remove every whiteout/opaque marker from a tree that has nothing below it."""
    _check_spec(spec)
    if spec == "none":
        return
    stack = [root]
    while stack:
        d = stack.pop()
        _clean_attrs(d, spec)
        for name in [n for n, c in d.children.items() if is_marker(n, c, spec)]:
            del d.children[name]
        stack.extend(c for c in d.children.values() if c.is_dir)


def apply_layer(
    lower: TreeInode, upper: TreeInode, spec: str, *, keep_lower_attrs: set[int] | None = None
) -> TreeInode:
    """Apply ``upper`` on top of ``lower`` in place and return ``lower`` (the merged root).

    ``keep_lower_attrs`` holds ``id()``s of upper directories whose attributes are implicit (e.g. a
    tar without an entry for a parent directory): the lower directory keeps its own attributes.
    Upper nodes are moved into the lower tree, not copied.
    """
    _check_spec(spec)
    implicit = keep_lower_attrs or set()
    stack: list[tuple[TreeInode, TreeInode]] = [(lower, upper)]
    while stack:
        ld, ud = stack.pop()
        if id(ud) not in implicit:
            ld.mode, ld.uid, ld.gid = ud.mode, ud.uid, ud.gid
            ld.mtime, ld.mtime_nsec = ud.mtime, ud.mtime_nsec
            ld.xattrs = dict(ud.xattrs)
            _clean_attrs(ld, spec)
        if is_opaque(ud, spec):
            ld.children.clear()
        for name, child in ud.children.items():
            target = whited_out(name, child, spec)
            if target is not None:
                ld.children.pop(target, None)
        for name in sorted(ud.children):
            child = ud.children[name]
            if is_marker(name, child, spec):
                continue
            existing = ld.children.get(name)
            if child.is_dir and existing is not None and existing.is_dir:
                stack.append((existing, child))
            else:
                if child.is_dir:
                    strip_markers(child, spec)
                ld.children[name] = child
    return lower
