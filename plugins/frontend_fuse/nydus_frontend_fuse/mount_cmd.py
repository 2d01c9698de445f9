"""``nydus mount BOOTSTRAP MOUNTPOINT --config CFG``: our own spelling of ``nydusd -B -M -C``.

In the foreground it serves until unmounted (``fusermount3 -u MOUNTPOINT``, Ctrl-C or SIGTERM).
With ``--background`` it starts ``nydusd`` as a separate process, waits until the mount is up (or
prints the daemon's error) and returns, so scripts can mount, read and unmount.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import click

from nydus_core.errors import NydusError, UsageError
from nydus_core.logsetup import LEVEL_NAMES

_STARTUP_TIMEOUT = 60.0


@click.command("mount")
@click.argument("bootstrap")
@click.argument("mountpoint")
@click.option("--config", "-C", "config_path", default=None,
              help="nydusd config (v1 JSON, v2 JSON/TOML): backend, cache, prefetch.")
@click.option("--localfs-dir", "-D", default=None,
              help="Read blobs from this directory instead of a config's backend.")
@click.option("--apisock", "-A", default=None,
              help="Serve nydusd's HTTP API on this unix socket (for nydusctl).")
@click.option("--prefetch-files", default=None,
              help="File listing paths to prefetch, one per line.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="Worker threads for reads.")
@click.option("--log-level", "-l", default=None,
              type=click.Choice(LEVEL_NAMES, case_sensitive=False), help="Log level [default: info].")
@click.option("--log-file", "-L", default=None, help="Write the daemon's log to this file.")
@click.option("--fs-driver", type=click.Choice(["fusedev", "erofs"]), default=None,
              help="fusedev (every operation in nydusd) or erofs (the kernel's EROFS driver over "
                   "nydusd's blob devices; RAFS v6, root, Linux 6.12+) [default: fusedev].")
@click.option("--background", "-d", is_flag=True,
              help="Start the daemon in the background; return once the mount is up.")
def mount(bootstrap: str, mountpoint: str, config_path: str | None, localfs_dir: str | None,
          apisock: str | None, prefetch_files: str | None, threads: int | None, log_level: str | None,
          log_file: str | None, fs_driver: str | None, background: bool) -> None:
    """Mount a RAFS image (lazily) at MOUNTPOINT with FUSE; unmount with fusermount3 -u.

    BOOTSTRAP is a bootstrap file, or an image reference when a plugin resolves them (its blobs are
    then read from the registry unless --config or --localfs-dir says otherwise)."""
    from nydus_core.imageref import resolve_image_argument

    bootstrap, resolved = resolve_image_argument(bootstrap)
    if resolved is not None and not config_path and not localfs_dir:
        config_path = bootstrap + ".nydusd.json"
        with open(config_path, "w") as f:
            json.dump(resolved, f, indent=2)
    if not config_path and not localfs_dir:
        raise UsageError("nydus mount needs --config CFG (or --localfs-dir DIR)")
    params: dict[str, Any] = {
        "bootstrap": bootstrap, "mountpoint": mountpoint, "config_path": config_path,
        "localfs_dir": localfs_dir, "apisock": apisock, "prefetch_files": prefetch_files,
        "threads": threads, "log_level": log_level, "log_file": log_file, "fs_driver": fs_driver,
    }
    if background:
        _start_background(params)
        return
    from .cli import _serve

    _serve(params)


def _start_background(params: dict[str, Any]) -> None:
    from nydus_core.mounts import is_mountpoint

    from .cli import build_settings
    from .mountpoint import check_mountpoint

    build_settings(params)  # fail here, in this process, on bad flags or configs
    mp = check_mountpoint(params["mountpoint"])
    argv = [sys.executable, "-c", "from nydus_frontend_fuse.cli import nydusd_main; nydusd_main()",
            "-M", mp, "-B", os.path.abspath(params["bootstrap"])]
    for flag, key in (("-C", "config_path"), ("-D", "localfs_dir"), ("-A", "apisock"),
                      ("--prefetch-files", "prefetch_files"), ("--thread-num", "threads"),
                      ("-l", "log_level"), ("-L", "log_file"), ("--fs-driver", "fs_driver")):
        if params.get(key) is not None:
            value = params[key]
            argv += [flag, os.path.abspath(value) if key.endswith(("path", "dir", "files", "sock")) else
                     str(value)]
    log_fd, log_path = tempfile.mkstemp(prefix="nydusd-", suffix=".log")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                            start_new_session=True, close_fds=True)
    os.close(log_fd)
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if is_mountpoint(mp):
            where = params.get("log_file") or log_path
            how = f"umount {mp}" if params.get("fs_driver") == "erofs" else f"fusermount3 -u {mp}"
            click.echo(f"mounted {params['bootstrap']} at {mp} (nydusd pid {proc.pid}, log {where}); "
                       f"unmount with: {how}")
            if params.get("log_file"):
                os.unlink(log_path)
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    else:
        proc.terminate()
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        lines = [line.strip() for line in fh if line.strip()]
    os.unlink(log_path)
    last = lines[-1] if lines else f"nydusd exited with status {proc.returncode}"
    raise NydusError(last.removeprefix("error: "))
