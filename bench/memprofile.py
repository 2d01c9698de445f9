"""Where nydusd's memory goes: tracemalloc inside a real nydusd serving a tree, after a full read.

    .venv/bin/python bench/memprofile.py [--tree small|stdlib] [--no-cache] [--top N] [--frames N]

Builds (or reuses, from ``bench/serve.py``) the image of the tree, starts ``nydusd`` under
tracemalloc (a wrapper that runs nydusd's own entry point and writes a snapshot on SIGUSR2), walks
the mount, reads every file, and prints the Python allocations still alive, grouped by the line
that made them (``--frames`` > 1 groups by call stack), beside VmRSS. The blob cache starts empty.
Needs root and /dev/fuse.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from common import BIN, OUT, python_tree, small_files_tree
from fuse import drop_caches, full_read, walk

from nydus_core.mounts import force_unmount, is_mountpoint

WORK = OUT / "memprofile"

WRAPPER = r"""
import signal, sys, tracemalloc
tracemalloc.start(int(sys.argv[1]))
out = sys.argv[2]
def dump(signum, frame):
    tracemalloc.take_snapshot().dump(out + ".tmp")
    import os
    os.replace(out + ".tmp", out)
signal.signal(signal.SIGUSR2, dump)
sys.argv = ["nydusd", *sys.argv[3:]]
from nydus_frontend_fuse.cli import nydusd_main
nydusd_main()
"""


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", choices=("small", "stdlib"), default="small")
    ap.add_argument("--no-cache", action="store_true", help="serve without the blob cache (-D)")
    ap.add_argument("--top", type=int, default=25, help="lines of the report")
    ap.add_argument("--frames", type=int, default=1, help="stack depth to group by")
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("bench/memprofile.py needs root and /dev/fuse", file=sys.stderr)
        return 2
    src = small_files_tree() if args.tree == "small" else python_tree()
    WORK.mkdir(parents=True, exist_ok=True)
    boot, blobs = WORK / f"{args.tree}.boot", WORK / f"{args.tree}-blobs"
    if not boot.exists():
        subprocess.run([str(BIN / "nydus-image"), "create", str(src), "-B", str(boot), "-D", str(blobs),
                        "--compressor", "zstd"], check=True, stdout=subprocess.DEVNULL)
    cache, mnt, snap = WORK / "cache", WORK / "mnt", WORK / "snapshot"
    shutil.rmtree(cache, ignore_errors=True)
    snap.unlink(missing_ok=True)
    mnt.mkdir(exist_ok=True)
    force_unmount(mnt)
    if args.no_cache:
        dargs = ["-D", str(blobs)]
    else:
        cfg = WORK / "nydusd.json"
        cfg.write_text(json.dumps({"device": {
            "backend": {"type": "localfs", "config": {"dir": str(blobs)}},
            "cache": {"type": "blobcache", "config": {"work_dir": str(cache)}}}}))
        dargs = ["-C", str(cfg)]
    argv = [sys.executable, "-c", WRAPPER, str(args.frames), str(snap), "-M", str(mnt), "-B", str(boot),
            *dargs]
    drop_caches()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not is_mountpoint(str(mnt)):
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "nydusd exited")
            time.sleep(0.05)
        time.sleep(0.5)
        idle = rss_mb(proc.pid)
        t_walk = walk(mnt)
        after_walk = rss_mb(proc.pid)
        t_read = full_read(mnt)
        after_read = rss_mb(proc.pid)
        proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 120
        while not snap.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        proc.wait(30)
        force_unmount(mnt)
    print(f"{args.tree} tree, {'no cache' if args.no_cache else 'blob cache (empty at start)'}; VmRSS "
          f"(tracemalloc on, so higher than without): idle {idle:.1f} MB, after find ({t_walk:.1f} s) "
          f"{after_walk:.1f} MB, after a full read ({t_read:.1f} s) {after_read:.1f} MB")
    snapshot = tracemalloc.Snapshot.load(str(snap))
    key = "traceback" if args.frames > 1 else "lineno"
    stats = snapshot.statistics(key)
    total = sum(s.size for s in stats)
    print(f"Python heap alive after the full read: {total / 1e6:.1f} MB in {sum(s.count for s in stats)} "
          "blocks; largest sites:")
    for s in stats[:args.top]:
        frames = s.traceback.format() if args.frames > 1 else [str(s.traceback[0])]
        where = " <- ".join(f.strip() for f in frames if not f.startswith("    "))
        print(f"  {s.size / 1e6:7.2f} MB {s.count:8d} blocks  {where.replace(str(Path.cwd()) + '/', '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
