"""A reader process for crash tests: ``python -m nydus_testsupport.crash_reader BOOT CONFIG SEED``.

Opens the image with the config (whose cache is under test), prefetches the whole image in the
background (the config's ``fs_prefetch`` rate applies) and meanwhile reads random ranges of random
files on demand, so both paths write to the cache. Prints ``READY`` once open and ``DONE`` when
prefetch has finished. The crash test kills it with SIGKILL at random moments.

``python -m nydus_testsupport.crash_reader --serve`` is a fork server for many such readers: it
imports the library and loads the plugins once, then for each ``RUN BOOT CONFIG SEED`` line on stdin
forks a reader (which prints ``READY``, and ``DONE`` if it gets that far); ``KILL`` SIGKILLs the
reader unless it already ended and answers ``EXIT killed`` or ``EXIT finished STATUS``. A reader
starts in milliseconds instead of a Python start-up and imports (~0.4 s).
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import sys
import time
import traceback
from typing import TextIO


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


def serve(commands: TextIO, out: TextIO) -> int:
    """Run the fork server (see the module docstring) until ``commands`` ends."""
    from nydus_core.plugins import get_manager

    for name in ("nydus_core.fs", "nydus_core.storage.prefetch"):  # imported once, before any fork
        importlib.import_module(name)
    get_manager()  # plugins loaded once too; nothing is opened: each reader opens its own cache
    pid = 0
    for line in commands:
        word, *args = line.split()
        if word == "RUN" and not pid:
            out.flush()
            pid = os.fork()
            if pid == 0:  # the reader
                code = 70
                try:
                    code = main(args)
                except BaseException:
                    traceback.print_exc()
                    print("FAILED", flush=True)
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
        elif word == "KILL" and pid:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print(f"EXIT finished {os.waitstatus_to_exitcode(status)}", file=out, flush=True)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                print("EXIT killed", file=out, flush=True)
            pid = 0
        else:
            print(f"ERROR unexpected {line.strip()!r}", file=out, flush=True)
    if pid:  # the test ended early: leave no reader behind
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        raise SystemExit(serve(sys.stdin, sys.stdout))
    raise SystemExit(main(sys.argv[1:]))
