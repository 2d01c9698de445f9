"""``nydusd --fs-driver erofs``: the kernel's EROFS driver serves the image over our FUSE blob devices.

Everything is checked against the kernel: the source tree, the fusedev mount of the same image and
upstream's v6 fixture must look the same through the EROFS mount; refusals are one line naming
``--fs-driver fusedev``; no mount is left after an unmount or a kill.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nydus_testsupport.fixtures import require_upstream
from nydus_testsupport.fuse import NydusdProcess, fuse_unavailable, script
from nydus_testsupport.tree_compare import diff_snapshots, snapshot_bootstrap, snapshot_dir
from nydus_testsupport.trees import make_sample_tree

from nydus_core.builder import BuildOptions, build
from nydus_core.mounts import mounts_at, mounts_under, read_mountinfo

V5 = "rafs-v5/sha256-nocompress-repeatable"
V6 = "rafs-v6/rafs-v6-2.2.boot"


def _erofs_unavailable() -> str | None:
    reason = fuse_unavailable()
    if reason:
        return reason
    from nydus_frontend_fuse.erofs_mount import erofs_unavailable

    return erofs_unavailable()


@pytest.fixture(autouse=True)
def need_erofs() -> None:
    """Skip when this host has no FUSE or no kernel EROFS (hardware/kernel feature, not ours)."""
    reason = _erofs_unavailable()
    if reason:
        pytest.skip(reason)


def _config(path: Path, blobs: Path, cache: Path, **extra: object) -> Path:
    path.write_text(json.dumps({
        "device": {"backend": {"type": "localfs", "config": {"dir": str(blobs)}},
                   "cache": {"type": "blobcache", "config": {"work_dir": str(cache)}}},
        "mode": "direct", "digest_validate": True, "enable_xattr": True, **extra}))
    return path


def _our_mounts(*roots: Path, daemons: tuple[NydusdProcess, ...] = ()) -> list[str]:
    """Mounts at or below ``roots`` and the blob-device mounts of ``daemons``."""
    found = [m.mountpoint for r in roots for m in mounts_at(str(r))]
    found += [p for r in roots for p in mounts_under(r)]
    pids = [f"/blobdev-{d.proc.pid}-" for d in daemons if d.proc is not None]
    found += [m.mountpoint for m in read_mountinfo() if any(p in m.mountpoint for p in pids)]
    return found


def _lstats(root: Path, *, dir_size: bool = True) -> dict[str, tuple[int, ...]]:
    """(mode, uid, gid, size, nlink, mtime_ns, rdev) of every path but the root (directory sizes
    depend on the filesystem: left out with ``dir_size=False``)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            size = st.st_size if dir_size or not stat.S_ISDIR(st.st_mode) else 0
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, size, st.st_nlink,
                                            st.st_mtime_ns, st.st_rdev)
    return out


@dataclass
class Pair:
    src: Path
    boot: Path
    blobs: Path
    work: Path
    erofs: Path
    fusedev: Path
    daemon: NydusdProcess


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Our own v6 image of a tree with every inode kind, mounted with both drivers."""
    reason = _erofs_unavailable()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("erofs")
    tree = make_sample_tree(work / "src", chunk_size=0x1000)
    assert not tree.skipped, tree.skipped
    os.chmod(tree.root, 0o755)
    boot, blobs = work / "image.boot", work / "blobs"
    build(tree.root, "dir-rafs", bootstrap=boot, blob_dir=blobs,
          options=BuildOptions(chunk_size=0x1000, compressor="zstd", digester="blake3"))
    e_mnt, f_mnt = work / "erofs", work / "fusedev"
    e_mnt.mkdir()
    f_mnt.mkdir()
    e_cfg = _config(work / "e.json", blobs, work / "e-cache")
    f_cfg = _config(work / "f.json", blobs, work / "f-cache")
    with NydusdProcess(f_mnt, ["-C", f_cfg, "-B", boot]), \
            NydusdProcess(e_mnt, ["-C", e_cfg, "-B", boot, "--fs-driver", "erofs"],
                          apisock=work / "api.sock") as daemon:
        assert [m.fstype for m in mounts_at(str(e_mnt))] == ["erofs"]
        yield Pair(tree.root, boot, blobs, work, e_mnt, f_mnt, daemon)
    assert _our_mounts(e_mnt, f_mnt, daemons=(daemon,)) == []


def test_erofs_mount_equals_the_source(pair: Pair) -> None:
    assert diff_snapshots(snapshot_dir(pair.src), snapshot_dir(pair.erofs)) == []


def test_erofs_mount_equals_the_fusedev_mount(pair: Pair) -> None:
    assert diff_snapshots(snapshot_dir(pair.fusedev), snapshot_dir(pair.erofs)) == []
    assert _lstats(pair.erofs) == _lstats(pair.fusedev)
    assert _lstats(pair.erofs, dir_size=False) == _lstats(pair.src, dir_size=False)


def test_the_kernel_answers_and_the_daemon_serves_blob_ranges(pair: Pair) -> None:
    (blob,) = pair.daemon.api.call("GET", "/api/v1/metrics/blobs", {"pattern": "true"})
    assert blob["reads"] > 0 and blob["read_bytes"] > 0
    assert blob["pattern"] and all(0 <= off < blob["size"] and n > 0 for off, n in blob["pattern"])
    info = pair.daemon.api.call("GET", "/api/v1/daemon")
    assert info["state"] == "RUNNING"


def test_upstream_v6_fixture_equals_its_fusedev_mount(tmp_path: Path) -> None:
    up = require_upstream()
    e_mnt, f_mnt = tmp_path / "e", tmp_path / "f"
    e_mnt.mkdir()
    f_mnt.mkdir()
    args = ["-C", _config(tmp_path / "c.json", up / "rafs-v6/blobs", tmp_path / "cache"), "-B", up / V6]
    with NydusdProcess(f_mnt, args), NydusdProcess(e_mnt, [*args, "--fs-driver", "erofs"]) as d:
        assert diff_snapshots(snapshot_dir(f_mnt), snapshot_dir(e_mnt)) == []
        assert _lstats(e_mnt) == _lstats(f_mnt)
        assert len(_lstats(e_mnt)) >= 2
        assert diff_snapshots(snapshot_bootstrap(up / V6, up / "rafs-v6/blobs"), snapshot_dir(e_mnt),
                              ignore_paths=[b"."]) == []
    assert _our_mounts(e_mnt, f_mnt, daemons=(d,)) == []


def _refusal(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_a_v5_bootstrap_is_refused_in_one_line(tmp_path: Path) -> None:
    up = require_upstream()
    mnt = tmp_path / "m"
    mnt.mkdir()
    proc = _refusal([script("nydusd"), "-D", str(up / "rafs-v5/blobs"), "-B", str(up / V5), "-M", str(mnt),
                     "--fs-driver", "erofs"])
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "RAFS v5" in lines[0] and "--fs-driver fusedev" in lines[0] and "Traceback" not in proc.stderr
    assert _our_mounts(mnt) == []


def test_no_cap_sys_admin_is_refused_in_one_line(pair: Pair, tmp_path: Path) -> None:
    mnt = tmp_path / "m"
    mnt.mkdir()
    proc = _refusal(["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin",
                     script("nydusd"), "-D", str(pair.blobs), "-B", str(pair.boot), "-M", str(mnt),
                     "--fs-driver", "erofs"])
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_SYS_ADMIN" in lines[0] and "--fs-driver fusedev" in lines[0], proc.stderr
    assert _our_mounts(mnt) == []


def test_a_corrupt_bootstrap_never_reaches_the_kernel(pair: Pair, tmp_path: Path) -> None:
    bad = tmp_path / "bad.boot"
    data = bytearray(pair.boot.read_bytes())
    data[len(data) // 2:len(data) // 2 + 256] = b"\xff" * 256
    bad.write_bytes(bytes(data))
    mnt = tmp_path / "m"
    mnt.mkdir()
    proc = _refusal([script("nydusd"), "-D", str(pair.blobs), "-B", str(bad), "-M", str(mnt),
                     "--fs-driver", "erofs"])
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert str(bad) in proc.stderr and "Traceback" not in proc.stderr
    assert _our_mounts(mnt) == []


def test_sigterm_unmounts_erofs_then_the_blob_devices(pair: Pair, tmp_path: Path) -> None:
    mnt = tmp_path / "m"
    mnt.mkdir()
    d = NydusdProcess(mnt, ["-C", _config(tmp_path / "c.json", pair.blobs, tmp_path / "cache"),
                            "-B", pair.boot, "--fs-driver", "erofs"]).start()
    try:
        assert (mnt / "tiny.txt").read_bytes() == b"hello\n"
        assert len(_our_mounts(mnt, daemons=(d,))) == 2  # the EROFS mount and the blob devices
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
        assert _our_mounts(mnt, daemons=(d,)) == []
        assert d.proc is not None and not list(Path("/run/nydusd").glob(f"blobdev-{d.proc.pid}-*"))
    finally:
        d.close()


def test_kill_gives_readers_eio_and_leaves_no_mount(pair: Pair, tmp_path: Path) -> None:
    mnt = tmp_path / "m"
    mnt.mkdir()
    d = NydusdProcess(mnt, ["-C", _config(tmp_path / "c.json", pair.blobs, tmp_path / "cache"),
                            "-B", pair.boot, "--fs-driver", "erofs"]).start()
    try:
        fd = os.open(mnt / "three-chunks.bin", os.O_RDONLY)
        try:
            d.signal(signal.SIGKILL)
            d.wait()
            start = time.monotonic()
            with pytest.raises(OSError) as exc:
                os.pread(fd, 4096, 4096)
            assert exc.value.errno == errno.EIO
            assert time.monotonic() - start < 5
        finally:
            os.close(fd)
        deadline = time.monotonic() + 10
        while _our_mounts(mnt, daemons=(d,)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _our_mounts(mnt, daemons=(d,)) == []
        assert stat.S_ISDIR(os.stat(mnt).st_mode)
    finally:
        d.close()
