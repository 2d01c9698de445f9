"""FUSE serving speed: our nydusd beside squashfuse_ll, kernel EROFS and the native tree, one run.

    .venv/bin/python bench/fuse.py [--source DIR] [--runs N] [--no-rss] [--rss-files N]

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
                 path: Path) -> None:
        self.name, self._up, self._down, self.path = name, up, down, path

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


def mounts(images: dict[str, Path], src: Path) -> list[Mount]:
    """The candidates, in the order they are measured."""
    cache = WORK / "cache"
    cfg = nydusd_config(images["blobs"], cache)
    daemons: dict[Path, NydusdProcess] = {}

    def nydusd_up(mnt: Path) -> None:
        daemons[mnt] = NydusdProcess(mnt, ["-C", cfg, "-B", images["boot"]]).start()

    def nydusd_down(mnt: Path) -> None:
        daemons.pop(mnt).close()

    def sqfs_up(mnt: Path) -> None:
        subprocess.run(["squashfuse_ll", str(images["sqfs"]), str(mnt)], check=True)

    def erofs_up(mnt: Path) -> None:
        subprocess.run(["mount", "-t", "erofs", "-o", "ro,loop", str(images["erofs"]), str(mnt)], check=True)

    def umount(mnt: Path) -> None:
        subprocess.run(["umount", str(mnt)], check=False)
        force_unmount(mnt)

    def nothing(_: Path) -> None:
        pass

    out = []
    for name, up, down in (("nydusd (ours)", nydusd_up, nydusd_down), ("squashfuse_ll", sqfs_up, umount),
                           ("kernel EROFS", erofs_up, umount)):
        mnt = WORK / ("mnt-" + name.split()[0].replace("_", ""))
        mnt.mkdir(exist_ok=True)
        force_unmount(mnt)
        out.append(Mount(name, up, down, mnt))
    out.append(Mount("native", nothing, nothing, src))
    # fill our blob cache once: the "data already in our blob cache" state of the cold runs
    if not any(cache.glob("*.blob.data")):
        with out[0].mounted() as mnt:
            t = full_read(mnt)
            print(f"  blob cache filled by a first full read in {t:.2f} s (lazy fetch from the backend)")
    return out


def measure(candidates: list[Mount], runs: int) -> dict[str, dict[str, list[float]]]:
    """Run every measurement ``runs`` times, interleaving the candidates."""
    res: dict[str, dict[str, list[float]]] = {
        m.name: {"cold": [], "warm": [], "walk": []} for m in candidates}
    for i in range(runs):
        for m in candidates:
            with m.mounted() as mnt:
                drop_caches()
                res[m.name]["cold"].append(full_read(mnt))
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
    candidates = mounts(images, src)
    res = measure(candidates, args.runs)
    base = {k: min(v) for k, v in res["squashfuse_ll"].items()}
    rows = [["mount", "full read cold", "x sqfs", "full read warm", "x sqfs", "walk cold", "x sqfs"]]
    for name, r in res.items():
        row = [name]
        for k in ("cold", "warm", "walk"):
            row += [f"{min(r[k]):.3f} s (median {statistics.median(r[k]):.3f})", f"{min(r[k]) / base[k]:.2f}"]
        rows.append(row)
    print(f"\nmin of {args.runs} runs (median in brackets); ratios of minimums to squashfuse_ll")
    print(table(rows))
    ours = res["nydusd (ours)"]
    ratio = {k: min(ours[k]) / base[k] for k in base}
    print(f"\ntargets: full read cold {ratio['cold']:.2f}x (<= 1.0), warm {ratio['warm']:.2f}x (<= 1.0), "
          f"walk {ratio['walk']:.2f}x (<= 2.0)")
    if not args.no_rss:
        rss, hwm, w = rss_check(args.rss_files)
        print(f"nydusd serving {args.rss_files} files: VmRSS {rss / 1024:.1f} MB, peak {hwm / 1024:.1f} MB "
              f"after a walk ({w:.2f} s) and a full read (target <= 80 MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
