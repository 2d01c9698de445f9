"""Build time of nydus-image (ours) beside mkfs.erofs and mksquashfs on realistic trees, one run.

    .venv/bin/python bench/build.py [--tree stdlib|small|both|layer] [--source DIR] [--repeat N]

Two trees: ``stdlib`` (copies of this Python's standard library, ~250 MB in ~8k files: large files
dominate) and ``small`` (issue 16's tree: 100,000 distinct files of 8 B-4 KiB in 1,000 directories,
half random, half repetitive; see ``common.small_files_tree``), where the cost is per file.

Targets: stdlib (issue 3): ours with lz4_block no slower than `mkfs.erofs -zlz4hc`, ours with zstd
no slower than `mksquashfs -comp zstd`. small (issue 16): lz4_block <= 1.5x `mkfs.erofs -zlz4hc`,
zstd <= 2x `mksquashfs -comp zstd -Xcompression-level 3`. Every tool runs in this one process run,
page cache warmed before each tool, median of ``--repeat`` runs; CPU s is user + system time of the
tool and its children (mean per run), which shows how much of the time a tool spreads over cores.

``--tree layer`` (issue 14): the stdlib tree as one gzip layer (``tar | gzip -6``), built as a full
Nydus layer (``-t targz-rafs``, zstd) and as an OCI-ref layer (``-t targz-ref``: zran index only, the
layer stays the data blob): time and bytes written, then a profile of the targz-ref build by phase
(inflate and index through libz, chunk digests, tar parsing, writing the RAFS blob). Target:
targz-ref faster than targz-rafs, output <= 10 % of the layer.
"""

from __future__ import annotations

import argparse
import os
import resource
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
          f"median of {repeat}; load average {_load()} (the machine is shared: compare rows of one run)")

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
    results: dict[str, tuple[float, int, float]] = {}
    for name, cmd in runs:
        warm(src)  # every tool from a warm page cache (other work on the machine may drop it)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = timed(cmd, before=clean, repeat=repeat)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / repeat
        results[name] = (t, out_size(), cpu)
    pairs = {ours_: base for ours_, base, _ in TARGETS[kind]}
    rows = [["tool", "time s", "CPU s", "MB/s", "files/s", "output MB", "vs baseline"]]
    for name, (t, out, cpu) in results.items():
        base = pairs.get(name)
        ratio = f"{t / results[base][0]:.2f}x time of {base}" if base else ""
        rows.append([name, f"{t:.2f}", f"{cpu:.2f}", f"{size / t / 1e6:.0f}", f"{entries / t:.0f}", mb(out),
                     ratio])
    print(table(rows))
    print(f"load average after: {_load()}")
    ok = True
    for name, base, limit in TARGETS[kind]:
        ratio = results[name][0] / results[base][0]
        met = ratio <= limit
        ok &= met
        print(f"target ({kind}): {name} <= {limit:g}x {base}: {ratio:.2f}x, {'MET' if met else 'MISSED'}")
    return ok


def _load() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _layer(src: Path) -> Path:
    """The tree as one tar.gz layer (made once per run)."""
    import subprocess

    out = OUT / "build-layer" / "layer.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        with open(out.with_suffix(".tmp"), "wb") as fh:
            tar = subprocess.Popen(["tar", "-C", str(src), "-cf", "-", "."], stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-6", "-n"], stdin=tar.stdout, stdout=fh, check=True)
            tar.wait()
        out.with_suffix(".tmp").rename(out)
    return out


def _profile_ref(layer: Path, work: Path) -> list[tuple[str, float]]:
    """cProfile of one in-process targz-ref build, own time summed by phase."""
    import cProfile
    import pstats

    from nydus_core.builder import BuildOptions, build

    prof = cProfile.Profile()
    prof.enable()
    build(layer, "targz-ref", bootstrap=work / "p.boot", blob_dir=work / "pblobs", options=BuildOptions())
    prof.disable()
    phases = {"inflate + index (libz via ctypes, CRC-32)": 0.0, "chunk digests (sha256)": 0.0,
              "tar parsing (tarfile)": 0.0, "RAFS blob + bootstrap (zstd, v6 writer)": 0.0, "other": 0.0}
    stats = pstats.Stats(prof)
    for (filename, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]  # not in typeshed
        own = row[2]
        where = f"{filename}:{func}"
        if "indexer" in filename or "libz" in filename or "crc32" in where or "inflate" in where:
            key = "inflate + index (libz via ctypes, CRC-32)"
        elif "sha256" in where or "digest" in func or "hashlib" in where:
            key = "chunk digests (sha256)"
        elif "tarfile" in filename:
            key = "tar parsing (tarfile)"
        elif "ref_blob" in filename or "v6_writer" in filename or "zstd" in where or "compress" in func:
            key = "RAFS blob + bootstrap (zstd, v6 writer)"
        else:
            key = "other"
        phases[key] += own
    return sorted(phases.items(), key=lambda kv: -kv[1])


def bench_layer(src: Path, repeat: int) -> bool:
    """targz-rafs vs targz-ref on one gzip layer of ``src``; return whether the targets were met."""
    layer = _layer(src)
    lsize = layer.stat().st_size
    work = OUT / "build-layer" / "out"
    print(f"\nlayer: {layer} ({mb(lsize)} MB gzip of {src}), median of {repeat}")

    def clean() -> None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)

    def written() -> int:  # the layer hard-linked into the blob dir by targz-ref is not new data
        return sum(p.stat().st_size for p in work.rglob("*") if p.is_file() and p.stat().st_ino !=
                   layer.stat().st_ino)

    results = {}
    for kind, extra in (("targz-rafs", ["--compressor", "zstd"]), ("targz-ref", [])):
        cmd = [str(BIN / "nydus-image"), "create", "-t", kind, str(layer), "-B", str(work / "boot"),
               "-D", str(work / "blobs"), *extra]
        t = timed(cmd, before=clean, repeat=repeat)
        results[kind] = (t, written())
    rows = [["build", "time s", "MB/s (gzip in)", "written MB", "written / layer"]]
    for kind, (t, out) in results.items():
        rows.append([kind, f"{t:.2f}", f"{lsize / t / 1e6:.0f}", mb(out), f"{100 * out / lsize:.1f} %"])
    print(table(rows))
    clean()
    phases = _profile_ref(layer, work)
    total = sum(v for _, v in phases)
    print("targz-ref profile (own time by phase, cProfile):")
    for name, v in phases:
        print(f"  {name:45s} {v:6.2f} s  {100 * v / total:4.0f} %")
    speed = results["targz-ref"][0] < results["targz-rafs"][0]
    small = results["targz-ref"][1] <= 0.10 * lsize
    print(f"target: targz-ref faster than targz-rafs: {'MET' if speed else 'MISSED'}; "
          f"output <= 10 % of the layer: {'MET' if small else 'MISSED'}")
    return speed and small


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", choices=("stdlib", "small", "both", "layer"), default="both",
                    help="which tree(s) to build (default: both; layer: targz-rafs vs targz-ref)")
    ap.add_argument("--source", type=Path, help="build this tree instead (stdlib targets)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool; the median is reported")
    args = ap.parse_args()
    if args.tree == "layer":
        return 0 if bench_layer(args.source or python_tree(), args.repeat) else 1
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
