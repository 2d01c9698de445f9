"""Build time of nydus-image (ours) beside mkfs.erofs and mksquashfs on the same realistic tree.

    .venv/bin/python bench/build.py [--source DIR] [--repeat N]

Targets (issue 3): ours with lz4_block no slower than `mkfs.erofs -zlz4hc`; ours with zstd no
slower than `mksquashfs -comp zstd`. Everything runs in this one process run, warm page cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from common import BIN, OUT, mb, python_tree, table, timed, tree_size, warm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, help="tree to build (default: copies of the Python stdlib)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool; the median is reported")
    args = ap.parse_args()
    src = args.source or python_tree()
    size, entries = tree_size(src)
    work = OUT / "build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"source: {src} ({mb(size)} MB of file data, {entries} entries), {os.cpu_count()} CPUs, "
          f"median of {args.repeat}")
    warm(src)

    def clean() -> None:
        for p in work.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    def ours(compressor: str) -> list[str]:
        return [str(BIN / "nydus-image"), "create", str(src), "-B", str(work / "boot"),
                "-D", str(work / "blobs"), "--compressor", compressor]

    def out_size() -> int:
        return sum(p.stat().st_size for p in work.rglob("*") if p.is_file())

    runs: list[tuple[str, list[str]]] = [
        ("mkfs.erofs -zlz4hc", ["mkfs.erofs", "-zlz4hc", str(work / "img.erofs"), str(src)]),
        ("nydus-image --compressor lz4_block", ours("lz4_block")),
        ("mksquashfs -comp zstd", ["mksquashfs", str(src), str(work / "img.sqfs"), "-comp", "zstd",
                                   "-noappend", "-quiet"]),
        ("nydus-image --compressor zstd", ours("zstd")),
        ("nydus-image --compressor none", ours("none")),
    ]
    results: dict[str, tuple[float, int]] = {}
    for name, cmd in runs:
        t = timed(cmd, before=clean, repeat=args.repeat)
        results[name] = (t, out_size())
    rows = [["tool", "time s", "MB/s", "output MB", "vs baseline"]]
    pairs = {"nydus-image --compressor lz4_block": "mkfs.erofs -zlz4hc",
             "nydus-image --compressor zstd": "mksquashfs -comp zstd"}
    for name, (t, out) in results.items():
        base = pairs.get(name)
        if base:
            ratio = f"{t / results[base][0]:.2f}x time of {base}"
        else:
            ratio = "baseline" if name in pairs.values() else ""
        rows.append([name, f"{t:.2f}", f"{size / t / 1e6:.0f}", mb(out), ratio])
    print(table(rows))
    ok = True
    for name, base in pairs.items():
        met = results[name][0] <= results[base][0]
        ok &= met
        print(f"target: {name} no slower than {base}: {'MET' if met else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
