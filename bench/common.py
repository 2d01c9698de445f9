"""Shared helpers for benchmarks: a realistic source tree, timing, and side-by-side tables."""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
BIN = Path(sys.executable).parent


def bytecode_warning() -> str | None:
    """Say so when this venv's packages have no compiled bytecode: every Python start (nydusd,
    nydusify) then compiles its imports (~0.5 s here), which a pip install never does; start-up
    figures would not be what users see. ``scripts/setup.sh`` compiles it."""
    import importlib.util

    import trio

    if os.path.exists(importlib.util.cache_from_source(trio.__file__)):
        return None
    return (f"warning: {BIN.parent} has no compiled bytecode (made without scripts/setup.sh?): start-up "
            f"times include compiling every import; run `bash scripts/setup.sh` first")


def tree_size(root: Path) -> tuple[int, int]:
    """Return (bytes of regular files, number of entries) below ``root``."""
    total = entries = 0
    for dirpath, dirnames, filenames in os.walk(root):
        entries += len(dirnames) + len(filenames)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.lstat(p).st_size
    return total, entries


def python_tree(min_bytes: int = 200 << 20) -> Path:
    """A realistic tree: copies of this Python's standard library (no site-packages) until the tree
    holds at least ``min_bytes`` (the 240 MB / ~8k-entry tree of docs/performance-notes)."""
    dest = OUT / f"tree-python-{min_bytes >> 20}M"
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    ignore = shutil.ignore_patterns("site-packages")
    i = 0
    while tree_size(dest)[0] < min_bytes:
        shutil.copytree(stdlib, dest / f"python-{i}", symlinks=True, ignore=ignore)
        i += 1
    (dest / ".complete").write_text("")
    return dest


SMALL_PHRASES = (b"the quick brown fox jumps over the lazy dog ", b"import os, sys\n",
                 b"#include <stdio.h>\n", b"lorem ipsum dolor sit amet ", b"\x00" * 16,
                 b"key = value\n", b"<div class=\"row\"></div>\n", b"0123456789abcdef")


def small_files_tree(n_files: int = 100_000, n_dirs: int = 1_000, seed: int = 16) -> Path:
    """The many-small-files tree of issue 16: ``n_files`` files of 8 B to 4 KiB (uniform) spread
    over ``n_dirs`` directories; every other file random bytes, the rest repetitive text (a few
    phrases repeated, compressible about like source code); every file's content distinct (each
    starts with its own number), so nothing dedups. Seeded: the same tree on every machine."""
    dest = OUT / f"tree-small-{n_files}-{n_dirs}-{seed}"
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    rnd = random.Random(seed)
    dirs = [dest / f"d{i // 100:02d}" / f"s{i:04d}" for i in range(n_dirs)]
    for d in dirs:
        d.mkdir(parents=True)
    for i in range(n_files):
        size = rnd.randint(8, 4096)
        head = i.to_bytes(8, "little")
        if i % 2:
            body = rnd.randbytes(size - 8)
        else:
            phrase = SMALL_PHRASES[rnd.randrange(len(SMALL_PHRASES))]
            body = (phrase * (size // len(phrase) + 1))[:size - 8]
        suffix = ".bin" if i % 2 else ".txt"
        with open(dirs[i % n_dirs] / f"f{i:06d}{suffix}", "wb") as fh:
            fh.write(head + body)
    (dest / ".complete").write_text("")
    return dest


def timed(cmd: Sequence[str], *, before: Callable[[], None] | None = None, repeat: int = 1) -> float:
    """Run ``cmd`` ``repeat`` times; return the median wall time in seconds."""
    times = []
    for _ in range(repeat):
        if before:
            before()
        t = time.perf_counter()
        subprocess.run(list(cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def warm(root: Path) -> None:
    """Read a whole tree once so every tool starts from the same (warm) page cache."""
    subprocess.run(f"tar cf - -C '{root}' . | wc -c", shell=True, check=True, stdout=subprocess.DEVNULL)


def table(rows: list[list[str]]) -> str:
    """Format rows as an aligned text table (first row is the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)) for r in rows)


def mb(n: float) -> str:
    """Format bytes as MB with one decimal."""
    return f"{n / 1e6:.1f}"
