"""Read throughput through the library API (nydus_core.fs) beside native Python reads of the same files.

    .venv/bin/python bench/read.py [--source DIR] [--size-mb 200] [--random 20000] [--drop-caches]

One realistic image (copies of the Python stdlib, ~8k files per copy, zstd + blake3, 1 MiB chunks,
built in this run) read through the localfs backend and the blobcache:

- sequential, 128 KiB and 1 MiB reads, every file in walk order: cold (empty blob cache: fetch,
  decompress, write the cache) and warm (all cache hits);
- random 4 KiB reads at random offsets of random files (pre-opened), cold and warm;
- native: the same files, the same read sizes and offsets, with Python's own open/read/pread;
- the warm passes again with ``digest_validate: true`` (every chunk read back from the cache is
  verified against its digest: the cost of the guarantee in docs/config.md).

Read amplification = bytes fetched from the backend / bytes the reads asked for.
Target (issue 4): warm sequential reads at >= 50 % of native. ``--drop-caches`` (root) drops the
page cache before each cold pass, native included; otherwise the blob files and the source tree sit
in the page cache and "cold" means an empty blob cache.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

from common import OUT, mb, python_tree, table, tree_size, warm

from nydus_core.fs import RafsFS, open_fs


def drop_caches() -> None:
    """Write back and drop the page cache (root only)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def file_list(src: Path) -> list[str]:
    """Return the regular files below ``src`` (relative, ``/``-prefixed) in walk order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append("/" + os.path.relpath(p, src))
    return out


def seq_native(src: Path, files: list[str], step: int) -> tuple[float, int]:
    """Read every file with ``step``-byte reads; return (seconds, bytes)."""
    total = 0
    t = time.perf_counter()
    for rel in files:
        with open(str(src) + rel, "rb", buffering=0) as f:
            while data := f.read(step):
                total += len(data)
    return time.perf_counter() - t, total


def seq_ours(fs: RafsFS, files: list[str], step: int) -> tuple[float, int]:
    """Read every file of the image with ``step``-byte reads; return (seconds, bytes)."""
    total = 0
    t = time.perf_counter()
    for rel in files:
        with fs.open(rel, buffering=0) as f:
            while data := f.read(step):
                total += len(data)
    return time.perf_counter() - t, total


def random_plan(src: Path, files: list[str], n: int, seed: int = 7) -> list[tuple[int, int]]:
    """Return ``n`` (file index, offset) pairs over non-empty files."""
    rnd = random.Random(seed)
    sizes = [os.path.getsize(str(src) + rel) for rel in files]
    candidates = [i for i, s in enumerate(sizes) if s > 0]
    plan = []
    for _ in range(n):
        i = rnd.choice(candidates)
        plan.append((i, rnd.randrange(0, sizes[i])))
    return plan


def rand_native(src: Path, files: list[str], plan: list[tuple[int, int]]) -> tuple[float, int]:
    """Random 4 KiB preads (each file opened once beforehand)."""
    used = sorted({i for i, _ in plan})
    fds = {i: os.open(str(src) + files[i], os.O_RDONLY) for i in used}
    try:
        total = 0
        t = time.perf_counter()
        for i, off in plan:
            total += len(os.pread(fds[i], 4096, off))
        return time.perf_counter() - t, total
    finally:
        for fd in fds.values():
            os.close(fd)


def rand_ours(fs: RafsFS, files: list[str], plan: list[tuple[int, int]]) -> tuple[float, int]:
    """Random 4 KiB preads through the library (each file opened once beforehand)."""
    used = sorted({i for i, _ in plan})
    handles = {i: fs.open(files[i], buffering=0) for i in used}
    try:
        total = 0
        t = time.perf_counter()
        for i, off in plan:
            total += len(handles[i].pread(4096, off))
        return time.perf_counter() - t, total
    finally:
        for h in handles.values():
            h.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, help="tree to read (default: copies of the Python stdlib)")
    ap.add_argument("--size-mb", type=int, default=200, help="size of the default tree (MB)")
    ap.add_argument("--random", type=int, default=20000, help="number of random 4 KiB reads")
    ap.add_argument("--compressor", default="zstd")
    ap.add_argument("--repeat", type=int, default=5, help="warm passes per test; the median is reported")
    ap.add_argument("--drop-caches", action="store_true", help="drop the page cache before cold passes")
    args = ap.parse_args()

    from nydus_core.builder import BuildOptions, build

    src = args.source or python_tree(args.size_mb << 20)
    size, entries = tree_size(src)
    work = OUT / "read"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t = time.perf_counter()
    res = build(src, bootstrap=work / "image.boot", blob_dir=work / "blobs",
                options=BuildOptions(compressor=args.compressor))
    build_s = time.perf_counter() - t
    blob_size = res.blob_info.compressed_size if res.blob_info else 0
    files = file_list(src)
    plan = random_plan(src, files, args.random)
    print(f"image: {src} ({mb(size)} MB in {len(files)} files, {entries} entries), {args.compressor}, "
          f"blob {mb(blob_size)} MB, built in {build_s:.1f} s; {os.cpu_count()} CPUs; "
          f"page cache {'dropped before cold passes' if args.drop_caches else 'warm (blobs and tree)'}")

    def cfg(cache: str, validate: bool = False) -> dict:
        return {"device": {"backend": {"type": "localfs", "config": {"dir": str(work / "blobs")}},
                           "cache": {"type": "blobcache", "config": {"work_dir": str(work / cache)}}},
                "mode": "direct", "digest_validate": validate}

    results: dict[str, dict[str, float]] = {}

    def record(name: str, native: tuple[float, int], ours: tuple[float, int], fs: RafsFS | None) -> None:
        n_mbps = native[1] / native[0] / 1e6
        o_mbps = ours[1] / ours[0] / 1e6
        amp = None
        if fs is not None:
            m = fs.metrics()
            asked = m["reads"]["bytes_requested"]
            amp = m["backend"]["read_amount_total"] / asked if asked else 0.0
        results[name] = {"native_mbps": n_mbps, "ours_mbps": o_mbps, "ratio": o_mbps / n_mbps,
                         "amplification": amp if amp is not None else float("nan")}

    def alternate(native_fn, ours_fn, n: int):
        """Run native and ours alternately ``n`` times (the machine's noise hits both alike);
        return the median (seconds, bytes) of each."""
        nat, our = [], []
        for _ in range(n):
            nat.append(native_fn())
            our.append(ours_fn())
        med = lambda runs: (statistics.median(r[0] for r in runs), runs[0][1])  # noqa: E731
        return med(nat), med(our)

    warm(src)
    for step, label in ((128 << 10, "128K"), (1 << 20, "1M")):
        if args.drop_caches:
            drop_caches()
        native_cold = seq_native(src, files, step)
        if args.drop_caches:
            drop_caches()
        with open_fs(work / "image.boot", cfg(f"cache-seq-{label}")) as fs:
            cold = seq_ours(fs, files, step)
            record(f"sequential {label}, cold", native_cold, cold, fs)
            fs.pipeline.wait_idle(60)
        warm(src)
        with open_fs(work / "image.boot", cfg(f"cache-seq-{label}")) as fs:
            seq_ours(fs, files, step)  # first pass decodes the metadata it touches
            nat, our = alternate(lambda step=step: seq_native(src, files, step),
                                 lambda step=step, fs=fs: seq_ours(fs, files, step), args.repeat)
            record(f"sequential {label}, warm", nat, our, fs)
        with open_fs(work / "image.boot", cfg(f"cache-seq-{label}", validate=True)) as fs:
            seq_ours(fs, files, step)
            nat, our = alternate(lambda step=step: seq_native(src, files, step),
                                 lambda step=step, fs=fs: seq_ours(fs, files, step), args.repeat)
            record(f"sequential {label}, warm, digest_validate", nat, our, fs)
    if args.drop_caches:
        drop_caches()
    native_cold = rand_native(src, files, plan)
    if args.drop_caches:
        drop_caches()
    with open_fs(work / "image.boot", cfg("cache-rand")) as fs:
        record("random 4K, cold", native_cold, rand_ours(fs, files, plan), fs)
        fs.pipeline.wait_idle(60)
    warm(src)
    with open_fs(work / "image.boot", cfg("cache-rand")) as fs:
        nat, our = alternate(lambda: rand_native(src, files, plan), lambda: rand_ours(fs, files, plan),
                             args.repeat)
        record("random 4K, warm", nat, our, fs)
    with open_fs(work / "image.boot", cfg("cache-rand", validate=True)) as fs:
        nat, our = alternate(lambda: rand_native(src, files, plan), lambda: rand_ours(fs, files, plan),
                             args.repeat)
        record("random 4K, warm, digest_validate", nat, our, fs)

    rows = [["test", "native MB/s", "nydus-py MB/s", "ours/native", "read amplification"]]
    for name, r in results.items():
        rows.append([name, f"{r['native_mbps']:.0f}", f"{r['ours_mbps']:.0f}", f"{r['ratio'] * 100:.0f} %",
                     f"{r['amplification']:.2f}"])
    print(table(rows))
    warm_ratio = min(results["sequential 128K, warm"]["ratio"], results["sequential 1M, warm"]["ratio"])
    verdict = "met" if warm_ratio >= 0.5 else "NOT met"
    print(f"target: warm sequential >= 50 % of native: {verdict} ({warm_ratio * 100:.0f} %)")
    (OUT / "read.json").write_text(json.dumps({"image_bytes": size, "files": len(files),
                                               "blob_bytes": blob_size, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
