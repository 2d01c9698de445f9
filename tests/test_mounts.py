"""nydus_core.mounts: the mount table as the kernel writes it, and real mounts made and detached."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nydus_core.mounts import (
    MountEntry,
    force_unmount,
    is_mountpoint,
    mounts_at,
    mounts_under,
    parse_mountinfo,
    read_mountinfo,
    unescape,
)

# Lines in proc(5)'s format: optional fields ("shared:1 master:2") between the options and " - ",
# an escaped space and backslash in a mountpoint, a FUSE mount with a subtype.
SAMPLE = (
    "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n"
    "36 35 98:0 /mnt1 /mnt/with\\040space\\134x rw,noatime master:1 shared:2 - ext3 /dev/root"
    " rw,errors=continue\n"
    "40 22 0:55 / /tmp/mnt rw,nosuid,nodev,relatime - fuse.nydusd nydusd rw,user_id=0,group_id=0\n"
    "garbage line\n"
    "41 22 0:56 / /tmp/no-separator rw\n"
)


def test_unescape_decodes_octal_escapes() -> None:
    assert unescape(r"/a\040b\011c\134d\012") == "/a b\tc\\d\n"
    assert unescape("/plain") == "/plain"
    assert unescape("/trailing\\") == "/trailing\\"


def test_parse_mountinfo_fields() -> None:
    entries = parse_mountinfo(SAMPLE)
    assert [e.mountpoint for e in entries] == ["/proc", "/mnt/with space\\x", "/tmp/mnt"]
    proc, ext3, fuse = entries
    assert proc == MountEntry(mount_id=22, parent_id=1, device="0:21", root="/", mountpoint="/proc",
                              options="rw,nosuid,nodev,noexec,relatime", fstype="proc", source="proc",
                              super_options="rw")
    assert (ext3.root, ext3.fstype, ext3.source, ext3.device) == ("/mnt1", "ext3", "/dev/root", "98:0")
    assert (fuse.fstype, fuse.source, fuse.parent_id) == ("fuse.nydusd", "nydusd", 22)


def test_this_process_mount_table() -> None:
    entries = read_mountinfo()
    assert any(e.mountpoint == "/" for e in entries)
    assert mounts_at("/proc")[-1].fstype == "proc"
    assert is_mountpoint("/proc") and not is_mountpoint("/proc/self/fd")
    assert read_mountinfo("/nonexistent/mountinfo") == []


def _need_root_mounts() -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting tmpfs needs root and mount(8)")


def _mount_tmpfs(path: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "nydus-test", str(path)], check=True,
                   capture_output=True)


def test_real_mounts_are_found_and_detached(tmp_path: Path) -> None:
    _need_root_mounts()
    outer = tmp_path / "with space"
    outer.mkdir()
    assert not is_mountpoint(outer) and mounts_under(tmp_path) == []
    _mount_tmpfs(outer)
    try:
        inner = outer / "inner"
        inner.mkdir()
        _mount_tmpfs(inner)
        _mount_tmpfs(inner)  # two mounts stacked at one path
        stack = mounts_at(inner)
        assert [e.fstype for e in stack] == ["tmpfs", "tmpfs"] and stack[0].source == "nydus-test"
        assert is_mountpoint(outer)
        assert mounts_under(tmp_path) == [str(inner), str(outer)]  # deepest first
        assert mounts_under(outer) == [str(inner)]

        assert force_unmount(inner) is True
        assert not is_mountpoint(inner) and is_mountpoint(outer)
        assert force_unmount(str(outer)) is True
        assert mounts_under(tmp_path) == []
        assert force_unmount(outer) is True  # nothing mounted: nothing to do
    finally:
        for mp in mounts_under(tmp_path):
            subprocess.run(["umount", "-l", mp], check=False, capture_output=True)
