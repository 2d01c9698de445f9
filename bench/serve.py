"""Serving a tree: nydusd's memory and full-read time beside squashfuse_ll, one run.

    .venv/bin/python bench/serve.py [--tree small|stdlib|both] [--compressor zstd] [--skip-build]

For each tree (``small``: issue 16's 100,000 distinct 8 B-4 KiB files in 1,000 directories;
``stdlib``: copies of the Python standard library, ~250 MB in ~8k files) the image is built with
our ``nydus-image create`` (zstd by default) and with ``mksquashfs -comp zstd -Xcompression-level
3``, then served, page cache dropped first, by:

- ``nydusd blobcache, empty``: localfs backend + blob cache, the cache empty (the first start);
- ``nydusd blobcache, filled``: the same daemon config restarted over the cache the first filled;
- ``nydusd no cache``: localfs backend only (nydusd ``-D``);
- ``squashfuse_ll`` (C, libfuse low-level), in the foreground so that its RSS can be read.

Each mount: VmRSS idle (0.5 s after the mount), after ``find`` (cold), after a full read (``tar cf -
. | wc -c``, cold), after a second full read (warm), with the times of the walk and the reads, and
VmHWM (peak RSS) at the end. Target (issue 16): nydusd's peak RSS after a full read with the blob
cache <= 80 MB on the small tree. Needs root and /dev/fuse.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import BIN, OUT, mb, python_tree, small_files_tree, table, tree_size
from fuse import drop_caches, full_read, walk
from nydus_testsupport.fuse import NydusdProcess

from nydus_core.mounts import force_unmount, is_mountpoint

WORK = OUT / "serve"
TARGET_MB = 80


def proc_mem(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            vals[key] = int(rest.split()[0]) * 1024 / 1e6
    return vals["VmRSS"], vals["VmHWM"]


def build_images(kind: str, src: Path, compressor: str, skip: bool) -> dict[str, Path]:
    """Build (or, with ``skip``, reuse) the nydus and squashfs images of ``src``."""
    work = WORK / kind
    out = {"boot": work / "image.boot", "blobs": work / "blobs", "sqfs": work / "image.sqfs"}
    if skip and all(p.exists() for p in out.values()):
        return out
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t = time.perf_counter()
    subprocess.run([str(BIN / "nydus-image"), "create", str(src), "-B", str(out["boot"]), "-D",
                    str(out["blobs"]), "--compressor", compressor], check=True, stdout=subprocess.DEVNULL)
    print(f"  nydus image ({compressor}) built in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    subprocess.run(["mksquashfs", str(src), str(out["sqfs"]), "-comp", "zstd", "-Xcompression-level", "3",
                    "-noappend", "-quiet"], check=True, stdout=subprocess.DEVNULL)
    print(f"  squashfs image (zstd level 3) built in {time.perf_counter() - t:.1f} s")
    return out


def measure_mount(mnt: Path, pid_of: Callable[[], int]) -> dict[str, float]:
    """Walk and read the mounted tree, noting memory after each step."""
    res: dict[str, float] = {}
    time.sleep(0.5)
    res["rss idle"] = proc_mem(pid_of())[0]
    drop_caches()
    res["walk s"] = walk(mnt)
    res["rss walk"] = proc_mem(pid_of())[0]
    drop_caches()
    res["read cold s"] = full_read(mnt)
    res["rss read"] = proc_mem(pid_of())[0]
    res["read warm s"] = full_read(mnt)
    res["rss warm"], res["peak"] = proc_mem(pid_of())
    return res


def serve_nydusd(images: dict[str, Path], cache: Path | None, mnt: Path) -> dict[str, float]:
    """Measure one nydusd mount (``cache`` None: no blob cache)."""
    if cache is None:
        args = ["-D", str(images["blobs"]), "-B", str(images["boot"])]
    else:
        cfg = mnt.parent / "nydusd.json"
        cfg.write_text(json.dumps({"device": {
            "backend": {"type": "localfs", "config": {"dir": str(images["blobs"])}},
            "cache": {"type": "blobcache", "config": {"work_dir": str(cache)}}}}))
        args = ["-C", str(cfg), "-B", str(images["boot"])]
    drop_caches()
    with NydusdProcess(mnt, args) as d:
        assert d.proc is not None
        pid = d.proc.pid
        return measure_mount(mnt, lambda: pid)


def serve_squashfuse(images: dict[str, Path], mnt: Path) -> dict[str, float]:
    """Measure squashfuse_ll (foreground) on the squashfs image."""
    drop_caches()
    proc = subprocess.Popen(["squashfuse_ll", "-f", str(images["sqfs"]), str(mnt)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not is_mountpoint(str(mnt)):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read() if proc.stderr else b""
                raise RuntimeError(f"squashfuse_ll did not mount: {err!r}")
            time.sleep(0.02)
        return measure_mount(mnt, lambda: proc.pid)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        proc.wait(20)
        force_unmount(mnt)


def bench_tree(kind: str, src: Path, compressor: str, skip: bool) -> bool:
    """Every mount of one tree; print the table; return whether the memory target holds."""
    size, entries = tree_size(src)
    print(f"\n{kind} tree: {src} ({mb(size)} MB of file data, {entries} entries), {os.cpu_count()} CPUs")
    images = build_images(kind, src, compressor, skip)
    mnt = WORK / kind / "mnt"
    mnt.mkdir(exist_ok=True)
    force_unmount(mnt)
    cache = WORK / kind / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    results = {
        "nydusd blobcache, empty": serve_nydusd(images, cache, mnt),
        "nydusd blobcache, filled": serve_nydusd(images, cache, mnt),
        "nydusd no cache": serve_nydusd(images, None, mnt),
        "squashfuse_ll": serve_squashfuse(images, mnt),
    }
    cols = ["rss idle", "walk s", "rss walk", "read cold s", "rss read", "read warm s", "rss warm", "peak"]
    rows = [["mount", *[c.replace("rss ", "RSS MB ") if c.startswith("rss") else c for c in cols[:-1]],
             "peak RSS MB"]]
    for name, r in results.items():
        rows.append([name, *[f"{r[c]:.1f}" if "rss" in c or c == "peak" else f"{r[c]:.2f}" for c in cols]])
    print(table(rows))
    peak = max(results["nydusd blobcache, empty"]["peak"], results["nydusd blobcache, filled"]["peak"])
    met = peak <= TARGET_MB
    if kind == "small":
        print(f"target (small): nydusd peak RSS after a full read with blobcache <= {TARGET_MB} MB: "
              f"{peak:.1f} MB, {'MET' if met else 'MISSED'}")
    sq = results["squashfuse_ll"]
    for name in ("nydusd blobcache, filled", "nydusd no cache"):
        r = results[name]
        print(f"{name}: full read cold {r['read cold s'] / sq['read cold s']:.2f}x, warm "
              f"{r['read warm s'] / sq['read warm s']:.2f}x, walk {r['walk s'] / sq['walk s']:.2f}x "
              "squashfuse_ll's time")
    return met or kind != "small"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", choices=("stdlib", "small", "both"), default="both")
    ap.add_argument("--compressor", default="zstd", help="our image's compressor (default zstd)")
    ap.add_argument("--skip-build", action="store_true", help="reuse the images of an earlier run")
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("bench/serve.py needs root and /dev/fuse (it mounts and drops caches)", file=sys.stderr)
        return 2
    ok = True
    if args.tree in ("small", "both"):
        ok &= bench_tree("small", small_files_tree(), args.compressor, args.skip_build)
    if args.tree in ("stdlib", "both"):
        ok &= bench_tree("stdlib", python_tree(), args.compressor, args.skip_build)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
