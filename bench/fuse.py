"""FUSE serving speed: our nydusd (fusedev and erofs drivers) beside squashfuse_ll, kernel EROFS and
the native tree, one run.

    .venv/bin/python bench/fuse.py [--source DIR] [--runs N] [--no-rss] [--rss-files N] [--keep-cache]

nydusd runs with both drivers over the same bootstrap and blob cache: ``fusedev`` (every operation
in the daemon), ``erofs`` (kernel EROFS over the complete ``.blob.data``, pinned, no FUSE), and
``erofs via FUSE`` (``--no-direct-blob-files``: every blob read through the blob-device
filesystem, direct I/O; ``--keep-cache`` adds the same with ``--blobdev-keep-cache``). The
ceiling is ``kernel EROFS (loop)``: the same bootstrap and ``.blob.data`` on loop devices. For the
erofs variants the page cache grown by the cold full read (``Cached`` in /proc/meminfo) and the
daemon's RSS after it are printed too.

One realistic tree (copies of this Python's stdlib, >= 200 MB and >= 5k files) is built into a
nydus image (our builder), a squashfs image (mksquashfs -comp zstd) and an EROFS image
(mkfs.erofs -zlz4hc, mounted by the kernel through a loop device). For each mount:

- cold full read: a fresh mount, page cache dropped (``echo 3 > drop_caches``), ``tar cf - . | wc -c``
  (``tar cf /dev/null`` would skip the data). For nydusd the data is already in its blob cache
  (filled by one full read beforehand), the state of a node that has pulled the image before.
- warm full read: the same again right after, page cache warm.
- cold walk: page cache dropped, ``find . | wc -l``.

Each figure is the minimum over ``--runs`` runs (the machine is shared and noisy; the minimum is the
least disturbed run) with the median beside it, and the ratio to squashfuse_ll. Targets (issue 5):
full read <= 1.0x squashfuse_ll, walk <= 2x squashfuse_ll, nydusd RSS <= 80 MB serving a 100k-file
image of distinct small files (``common.small_files_tree``, no cache; measured last, after a walk
and a full read of that image; ``bench/serve.py`` measures memory in every state, with and without
the blob cache). Needs root and /dev/fuse.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from common import OUT, mb, python_tree, small_files_tree, table, tree_size
from nydus_testsupport.fuse import NydusdProcess

from nydus_core.builder import BuildOptions, build
from nydus_core.mounts import force_unmount

WORK = OUT / "fuse"


def drop_caches() -> None:
    """Write dirty pages and drop the page, dentry and inode caches."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")


def run_shell(cmd: str) -> float:
    """Run ``cmd`` with bash; return its wall time in seconds."""
    t = time.perf_counter()
    subprocess.run(["bash", "-c", cmd], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def full_read(mnt: Path) -> float:
    """Time ``tar cf - . | wc -c`` of the mount."""
    return run_shell(f"tar -C '{mnt}' -cf - . | wc -c")


def walk(mnt: Path) -> float:
    """Time ``find . | wc -l`` of the mount."""
    return run_shell(f"find '{mnt}' | wc -l")


class Mount:
    """One way of serving the tree: ``mount()`` returns the path, ``umount()`` undoes it."""

    def __init__(self, name: str, up: Callable[[Path], None], down: Callable[[Path], None],
                 path: Path, pid: Callable[[Path], int | None] | None = None) -> None:
        self.name, self._up, self._down, self.path = name, up, down, path
        self.pid = pid

    @contextlib.contextmanager
    def mounted(self) -> Iterator[Path]:
        self._up(self.path)
        try:
            yield self.path
        finally:
            self._down(self.path)


def build_images(src: Path) -> dict[str, Path]:
    """Build (or reuse) the nydus, squashfs and EROFS images of ``src``."""
    WORK.mkdir(parents=True, exist_ok=True)
    stamp = WORK / "source.txt"
    if not stamp.exists() or stamp.read_text() != str(src):
        for p in WORK.iterdir():
            if p.is_dir() and not p.is_mount():
                shutil.rmtree(p)
            elif p.is_file():
                p.unlink()
    out = {"boot": WORK / "image.boot", "blobs": WORK / "blobs", "sqfs": WORK / "image.sqfs",
           "erofs": WORK / "image.erofs"}
    if not out["boot"].exists():
        t = time.perf_counter()
        build(src, "dir-rafs", bootstrap=out["boot"], blob_dir=out["blobs"],
              options=BuildOptions(compressor="lz4_block"))
        print(f"  nydus image (lz4_block) built in {time.perf_counter() - t:.1f} s")
    if not out["sqfs"].exists():
        t = time.perf_counter()
        subprocess.run(["mksquashfs", str(src), str(out["sqfs"]), "-comp", "zstd", "-noappend", "-quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        print(f"  squashfs image (zstd) built in {time.perf_counter() - t:.1f} s")
    if not out["erofs"].exists():
        t = time.perf_counter()
        subprocess.run(["mkfs.erofs", "-zlz4hc", str(out["erofs"]), str(src)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"  EROFS image (lz4hc) built in {time.perf_counter() - t:.1f} s")
    stamp.write_text(str(src))
    return out


def nydusd_config(blobs: Path, cache: Path) -> Path:
    """Write a v1 config: localfs backend on ``blobs``, blob cache in ``cache``."""
    import json

    cfg = WORK / "nydusd.json"
    cfg.write_text(json.dumps({"device": {
        "backend": {"type": "localfs", "config": {"dir": str(blobs)}},
        "cache": {"type": "blobcache", "config": {"work_dir": str(cache)}}}}))
    return cfg


def mounts(images: dict[str, Path], src: Path, keep_cache: bool = False) -> list[Mount]:
    """The candidates, in the order they are measured."""
    cache = WORK / "cache"
    cfg = nydusd_config(images["blobs"], cache)
    daemons: dict[Path, NydusdProcess] = {}

    def nydusd(*flags: str) -> tuple[Callable[[Path], None], Callable[[Path], None]]:
        def up(mnt: Path) -> None:
            daemons[mnt] = NydusdProcess(mnt, ["-C", cfg, "-B", images["boot"], *flags]).start()

        def down(mnt: Path) -> None:
            daemons.pop(mnt).close()
        return up, down

    def pid(mnt: Path) -> int | None:
        d = daemons.get(mnt)
        return d.proc.pid if d is not None and d.proc is not None else None

    def sqfs_up(mnt: Path) -> None:
        subprocess.run(["squashfuse_ll", str(images["sqfs"]), str(mnt)], check=True)

    def erofs_up(mnt: Path) -> None:
        subprocess.run(["mount", "-t", "erofs", "-o", "ro,loop", str(images["erofs"]), str(mnt)], check=True)

    loops: dict[Path, list[str]] = {}

    def erofs_same_up(mnt: Path) -> None:
        """Kernel EROFS over the same bootstrap and .blob.data, each on a loop device."""
        files = [images["boot"], *sorted(cache.glob("*.blob.data"))]
        devs = [subprocess.run(["losetup", "-r", "-f", "--show", str(f)], check=True, capture_output=True,
                               text=True).stdout.strip() for f in files]
        loops[mnt] = devs
        opts = ",".join(["ro", *(f"device={d}" for d in devs[1:])])
        subprocess.run(["mount", "-t", "erofs", "-o", opts, devs[0], str(mnt)], check=True)

    def erofs_same_down(mnt: Path) -> None:
        umount(mnt)
        for d in loops.pop(mnt, []):
            subprocess.run(["losetup", "-d", d], check=False)

    def umount(mnt: Path) -> None:
        subprocess.run(["umount", str(mnt)], check=False)
        force_unmount(mnt)

    def nothing(_: Path) -> None:
        pass

    variants = [("nydusd fusedev", *nydusd(), pid), ("nydusd erofs", *nydusd("--fs-driver", "erofs"), pid),
                ("nydusd erofs via FUSE", *nydusd("--fs-driver", "erofs", "--no-direct-blob-files"), pid)]
    if keep_cache:
        flags = ("--fs-driver", "erofs", "--no-direct-blob-files", "--blobdev-keep-cache")
        variants.append(("nydusd erofs via FUSE keep_cache", *nydusd(*flags), pid))
    variants += [("squashfuse_ll", sqfs_up, umount, None),
                 ("kernel EROFS (loop)", erofs_same_up, erofs_same_down, None),
                 ("kernel EROFS lz4hc", erofs_up, umount, None)]
    out = []
    for i, (name, up, down, get_pid) in enumerate(variants):
        mnt = WORK / f"mnt-{i}"
        mnt.mkdir(exist_ok=True)
        force_unmount(mnt)
        out.append(Mount(name, up, down, mnt, get_pid))
    out.append(Mount("native", nothing, nothing, src))
    # fill our blob cache once: the "data already in our blob cache" state of the cold runs
    if not any(cache.glob("*.blob.data")):
        with out[0].mounted() as mnt:
            t = full_read(mnt)
            print(f"  blob cache filled by a first full read in {t:.2f} s (lazy fetch from the backend)")
    return out


def cached_kb() -> int:
    """``Cached`` of /proc/meminfo (KiB): the page cache."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Cached:"):
            return int(line.split()[1])
    return 0


def rss_kb(pid: int | None) -> int:
    """VmRSS of ``pid`` (KiB), 0 when unknown."""
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(candidates: list[Mount], runs: int) -> dict[str, dict[str, list[float]]]:
    """Run every measurement ``runs`` times, interleaving the candidates."""
    res: dict[str, dict[str, list[float]]] = {
        m.name: {"cold": [], "warm": [], "walk": [], "cached": [], "rss": []} for m in candidates}
    for i in range(runs):
        for m in candidates:
            with m.mounted() as mnt:
                drop_caches()
                before = cached_kb()
                res[m.name]["cold"].append(full_read(mnt))
                res[m.name]["cached"].append((cached_kb() - before) / 1024)
                res[m.name]["rss"].append(rss_kb(m.pid(mnt) if m.pid else None) / 1024)
                res[m.name]["warm"].append(full_read(mnt))
                drop_caches()
                res[m.name]["walk"].append(walk(mnt))
        print(f"  run {i + 1}/{runs} done")
    return res


def rss_check(n_files: int) -> tuple[int, int, float]:
    """Serve an image of ``n_files`` small files; return (VmRSS, VmHWM) in KiB after a walk and a
    full read, and the walk time."""
    # issue 16's tree: distinct content, so every file has its own chunk (a tree whose files dedup
    # to a few hundred chunks never measures the per-chunk cost)
    tree = small_files_tree(n_files, max(1, n_files // 100))
    boot, blobs = WORK / f"rss-small-{n_files}.boot", WORK / f"rss-small-{n_files}-blobs"
    if not boot.exists():
        build(tree, "dir-rafs", bootstrap=boot, blob_dir=blobs, options=BuildOptions(compressor="lz4_block"))
    mnt = WORK / "mnt-rss"
    mnt.mkdir(exist_ok=True)
    force_unmount(mnt)
    with NydusdProcess(mnt, ["-D", blobs, "-B", boot]) as d:
        assert d.proc is not None
        w = walk(mnt)
        full_read(mnt)
        status = Path(f"/proc/{d.proc.pid}/status").read_text()
        vals = {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in status.splitlines())
                if k in ("VmRSS", "VmHWM")}
    return vals["VmRSS"], vals["VmHWM"], w


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, help="tree to serve (default: copies of the Python stdlib)")
    ap.add_argument("--runs", type=int, default=5, help="runs per measurement (min and median shown)")
    ap.add_argument("--no-rss", action="store_true", help="skip the 100k-file RSS measurement")
    ap.add_argument("--rss-files", type=int, default=100_000, help="files in the RSS image")
    ap.add_argument("--only-rss", action="store_true", help="only the RSS measurement")
    ap.add_argument("--keep-cache", action="store_true",
                    help="also measure the erofs driver's blob devices with the page cache (keep_cache)")
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("bench/fuse.py needs root and /dev/fuse (it mounts and drops caches)", file=sys.stderr)
        return 2
    if args.only_rss:
        WORK.mkdir(parents=True, exist_ok=True)
        rss, hwm, w = rss_check(args.rss_files)
        print(f"nydusd serving {args.rss_files} files: VmRSS {rss / 1024:.1f} MB, peak {hwm / 1024:.1f} MB "
              f"after a walk ({w:.2f} s) and a full read (target <= 80 MB)")
        return 0
    src = args.source or python_tree()
    size, entries = tree_size(src)
    print(f"tree: {src} ({mb(size)} MB of file data, {entries} entries), {os.cpu_count()} CPUs")
    images = build_images(src)
    candidates = mounts(images, src, args.keep_cache)
    res = measure(candidates, args.runs)
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in res.items()}
    base = med["squashfuse_ll"]
    rows = [["mount", "full read cold", "x sqfs", "full read warm", "x sqfs", "walk cold", "x sqfs",
             "page cache +MB", "daemon RSS MB"]]
    for name, r in res.items():
        row = [name]
        for k in ("cold", "warm", "walk"):
            row += [f"{med[name][k]:.3f} s (min {min(r[k]):.3f})", f"{med[name][k] / base[k]:.2f}"]
        row += [f"{med[name]['cached']:.0f}", f"{med[name]['rss']:.0f}" if med[name]["rss"] else "-"]
        rows.append(row)
    print(f"\nmedian of {args.runs} interleaved runs (min in brackets); ratios of medians to squashfuse_ll; "
          "page cache grown by the cold full read")
    print(table(rows))
    ours = med["nydusd fusedev"]
    print(f"\nfusedev targets: full read cold {ours['cold'] / base['cold']:.2f}x (<= 1.0), "
          f"warm {ours['warm'] / base['warm']:.2f}x (<= 1.0), "
          f"walk {ours['walk'] / base['walk']:.2f}x (<= 2.0)")
    ceiling = med["kernel EROFS (loop)"]
    for name in ("nydusd erofs", "nydusd erofs via FUSE"):
        e = med[name]
        print(f"{name}: full read cold {e['cold'] / base['cold']:.2f}x squashfuse_ll (<= 0.35), "
              f"warm {e['warm'] / ceiling['warm']:.2f}x and walk {e['walk'] / ceiling['walk']:.2f}x "
              "kernel EROFS (loop) over the same bootstrap and .blob.data (<= 1.2)")
    if not args.no_rss:
        rss, hwm, w = rss_check(args.rss_files)
        print(f"nydusd serving {args.rss_files} files: VmRSS {rss / 1024:.1f} MB, peak {hwm / 1024:.1f} MB "
              f"after a walk ({w:.2f} s) and a full read (target <= 80 MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
