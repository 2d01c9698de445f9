"""A reader process for crash tests: ``python -m nydus_testsupport.crash_reader BOOT CONFIG SEED``.

Opens the image with the config (whose cache is under test), prefetches the whole image in the
background (the config's ``fs_prefetch`` rate applies) and meanwhile reads random ranges of random
files on demand, so both paths write to the cache. Prints ``READY`` once open and ``DONE`` when
prefetch has finished. The crash test kills it with SIGKILL at random moments.
"""

from __future__ import annotations

import json
import random
import sys
import time


def main(argv: list[str]) -> int:
    """Run the reader; see the module docstring."""
    from nydus_core.fs import open_fs
    from nydus_core.storage.prefetch import BasePrefetcher

    boot, config_path, seed = argv[0], argv[1], int(argv[2])
    with open(config_path) as f:
        config = json.load(f)
    rnd = random.Random(seed)
    with open_fs(boot, config, prefetcher="all") as fs:
        files = [f"{d.rstrip('/')}/{n}" for d, _dirs, names in fs.walk("/") for n in names]
        sizes = {p: fs.stat(p).st_size for p in files}
        print("READY", flush=True)
        assert isinstance(fs.prefetcher, BasePrefetcher)
        while not fs.prefetcher.done.is_set():
            path = rnd.choice(files)
            with fs.open(path, buffering=0) as fh:
                off = rnd.randint(0, max(0, sizes[path] - 1))
                fh.pread(rnd.choice([4096, 65536]), off)
            time.sleep(0.05)
        print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
