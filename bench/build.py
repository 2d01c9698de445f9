"""Build time of nydus-image (ours) beside mkfs.erofs and mksquashfs on realistic trees, one run.

    .venv/bin/python bench/build.py [--tree stdlib|small|both] [--source DIR] [--repeat N]

Two trees: ``stdlib`` (copies of this Python's standard library, ~250 MB in ~8k files: large files
dominate) and ``small`` (issue 16's tree: 100,000 distinct files of 8 B-4 KiB in 1,000 directories,
half random, half repetitive; see ``common.small_files_tree``), where the cost is per file.

Targets: stdlib (issue 3): ours with lz4_block no slower than `mkfs.erofs -zlz4hc`, ours with zstd
no slower than `mksquashfs -comp zstd`. small (issue 16): lz4_block <= 1.5x `mkfs.erofs -zlz4hc`,
zstd <= 2x `mksquashfs -comp zstd -Xcompression-level 3`. Every tool runs in this one process run,
page cache warm, median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from common import BIN, OUT, mb, python_tree, small_files_tree, table, timed, tree_size, warm

ERO = "mkfs.erofs -zlz4hc"
SQ = "mksquashfs -comp zstd"
SQ3 = "mksquashfs -comp zstd -Xcompression-level 3"
LZ4 = "nydus-image --compressor lz4_block"
ZSTD = "nydus-image --compressor zstd"

#: per tree: (ours, baseline, allowed ratio)
TARGETS = {
    "stdlib": [(LZ4, ERO, 1.0), (ZSTD, SQ, 1.0)],
    "small": [(LZ4, ERO, 1.5), (ZSTD, SQ3, 2.0)],
}


def bench_tree(kind: str, src: Path, repeat: int) -> bool:
    """Build ``src`` with every tool; print the table and the targets; return whether all were met."""
    size, entries = tree_size(src)
    work = OUT / "build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"\n{kind} tree: {src} ({mb(size)} MB of file data, {entries} entries), {os.cpu_count()} CPUs, "
          f"median of {repeat}")
    warm(src)

    def clean() -> None:
        for p in work.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    def ours(compressor: str) -> list[str]:
        return [str(BIN / "nydus-image"), "create", str(src), "-B", str(work / "boot"),
                "-D", str(work / "blobs"), "--compressor", compressor]

    def out_size() -> int:
        return sum(p.stat().st_size for p in work.rglob("*") if p.is_file())

    sqfs = ["mksquashfs", str(src), str(work / "img.sqfs"), "-comp", "zstd", "-noappend", "-quiet"]
    runs: list[tuple[str, list[str]]] = [
        (ERO, ["mkfs.erofs", "-zlz4hc", str(work / "img.erofs"), str(src)]),
        (LZ4, ours("lz4_block")),
        (SQ3, [*sqfs, "-Xcompression-level", "3"]),
        (ZSTD, ours("zstd")),
        ("nydus-image --compressor none", ours("none")),
    ]
    if kind == "stdlib":
        runs.insert(3, (SQ, sqfs))
    results: dict[str, tuple[float, int]] = {}
    for name, cmd in runs:
        t = timed(cmd, before=clean, repeat=repeat)
        results[name] = (t, out_size())
    pairs = {ours_: base for ours_, base, _ in TARGETS[kind]}
    rows = [["tool", "time s", "MB/s", "files/s", "output MB", "vs baseline"]]
    for name, (t, out) in results.items():
        base = pairs.get(name)
        ratio = f"{t / results[base][0]:.2f}x time of {base}" if base else ""
        rows.append([name, f"{t:.2f}", f"{size / t / 1e6:.0f}", f"{entries / t:.0f}", mb(out), ratio])
    print(table(rows))
    ok = True
    for name, base, limit in TARGETS[kind]:
        ratio = results[name][0] / results[base][0]
        met = ratio <= limit
        ok &= met
        print(f"target ({kind}): {name} <= {limit:g}x {base}: {ratio:.2f}x, {'MET' if met else 'MISSED'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", choices=("stdlib", "small", "both"), default="both",
                    help="which tree(s) to build (default: both)")
    ap.add_argument("--source", type=Path, help="build this tree instead (stdlib targets)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool; the median is reported")
    args = ap.parse_args()
    if args.source:
        return 0 if bench_tree("stdlib", args.source, args.repeat) else 1
    ok = True
    if args.tree in ("stdlib", "both"):
        ok &= bench_tree("stdlib", python_tree(), args.repeat)
    if args.tree in ("small", "both"):
        ok &= bench_tree("small", small_files_tree(), args.repeat)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
