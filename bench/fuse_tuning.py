"""Kernel caching choices of nydusd, measured: each knob turned off in turn on the bench/fuse.py tree.

    .venv/bin/python bench/fuse_tuning.py [--runs N]

Rows: our defaults (entry/attr timeouts 86400 s, keep_cache, the kernel's 128 KiB read-ahead,
store-on-open up to 1 MiB, cache hits served inline), then timeouts 0 (pyfuse3's example default),
keep_cache off, read-ahead 1 MiB, store-on-open off, and store-on-open off with cache hits served
on worker threads instead of inline on the trio thread, store-on-open up to 8 MiB, and pyfuse3's own
worker-task spawning and read lock (``--eager-fuse-workers``) instead of ours. Columns as in
bench/fuse.py (cold = fresh mount, page cache dropped, data in our blob cache). Figures are minimums
of ``--runs`` runs (median beside). Needs root and /dev/fuse.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from common import python_tree, table
from fuse import WORK, build_images, drop_caches, full_read, mounts, walk
from nydus_testsupport.fuse import NydusdProcess

from nydus_core.mounts import force_unmount

VARIANTS: list[tuple[str, list[str]]] = [
    ("defaults", []),
    ("timeouts 0", ["--kernel-cache-timeout", "0"]),
    ("keep_cache off", ["--no-keep-cache"]),
    ("read-ahead 1 MiB", ["--readahead-kb", "1024"]),
    ("store-on-open off", ["--store-on-open-kb", "0"]),
    ("store off, reads on threads", ["--store-on-open-kb", "0", "--no-inline-reads"]),
    ("store-on-open 8 MiB", ["--store-on-open-kb", "8192"]),
    ("pyfuse3's eager workers", ["--eager-fuse-workers"]),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("needs root and /dev/fuse", file=sys.stderr)
        return 2
    src = python_tree()
    images = build_images(src)
    mounts(images, src)  # writes the config and fills the blob cache
    cfg = WORK / "nydusd.json"
    mnt = WORK / "mnt-tuning"
    mnt.mkdir(exist_ok=True)
    force_unmount(mnt)
    res: dict[str, dict[str, list[float]]] = {n: {"cold": [], "warm": [], "walk": []} for n, _ in VARIANTS}
    for _ in range(args.runs):
        for name, flags in VARIANTS:
            with NydusdProcess(mnt, ["-C", cfg, "-B", images["boot"], *flags]):
                drop_caches()
                res[name]["cold"].append(full_read(mnt))
                res[name]["warm"].append(full_read(mnt))
                drop_caches()
                res[name]["walk"].append(walk(mnt))
    rows = [["variant", "full read cold", "full read warm", "walk cold"]]
    for name, r in res.items():
        rows.append([name] + [f"{min(r[k]):.3f} s ({statistics.median(r[k]):.3f})"
                              for k in ("cold", "warm", "walk")])
    print(f"min of {args.runs} runs (median)")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
