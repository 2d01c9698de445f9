"""``nydusify mount``: fetch a Nydus image's bootstrap from its registry and serve it with nydusd.

The bootstrap layer is fetched by digest (checked against the manifest), unpacked into
``--work-dir``; a nydusd config names the registry backend (credentials from the Docker config)
and a blob cache in the work dir. The ``fuse`` frontend (``nydus-frontend-fuse``, found through the
plugin registry) then serves in this process until interrupted (SIGINT/SIGTERM unmount) — one
Python start-up instead of two, which is most of a cold start's fixed cost. With ``nydusd`` set
(upstream's ``--nydusd``) that binary runs in the foreground instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nydus_core.errors import UsageError

from . import remote

log = logging.getLogger("nydusify")


@dataclass
class MountOptions:
    """What to mount and where."""

    target: str
    mount_path: Path = Path("./image-fs")
    insecure: bool = False
    plain_http: bool = False
    platform: str = "linux/amd64"
    backend_type: str = "registry"
    backend_config: dict[str, Any] = field(default_factory=dict)
    prefetch: bool = False
    work_dir: Path = Path("./tmp")
    log_level: str = "info"
    nydusd: str | None = None
    #: read-ahead of on-demand reads; 0 by default: a starting container reads scattered pieces of
    #: many files, and read-ahead spends the link's bandwidth on bytes nobody asked for
    amplify_io: int = 0
    #: ``fusedev`` or ``erofs`` (nydusd's ``--fs-driver``)
    fs_driver: str = "fusedev"


def nydusd_binary() -> str:
    """The ``nydusd`` next to this Python, else on ``PATH``; UsageError naming the package if absent."""
    here = Path(sys.executable).with_name("nydusd")
    if here.exists():
        return str(here)
    found = shutil.which("nydusd")
    if found is None:
        raise UsageError("nydusd is not installed. Install it with: pip install nydus-frontend-fuse")
    return found


def prepare(opts: MountOptions) -> tuple[Path, Path]:
    """Fetch the bootstrap and write the nydusd config; return their paths."""
    client, ref = remote.open_registry(opts.target, insecure=opts.insecure, plain_http=opts.plain_http)
    work = Path(opts.work_dir).resolve()
    with client:
        image = remote.resolve(client, ref, opts.platform, nydus=True)
        name = image.manifest.digest.replace(":", "-")
        bootstrap = image.fetch_bootstrap(work / "bootstraps" / name)
        if opts.backend_type == "registry":
            backend = {"type": "registry", "config": remote.registry_backend_config(
                client, ref, insecure=opts.insecure, plain_http=opts.plain_http)}
        else:
            backend = {"type": opts.backend_type, "config": dict(opts.backend_config)}
    cache_dir = work / "cache"
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = {"device": {"backend": backend,
                         "cache": {"type": "blobcache", "config": {"work_dir": str(cache_dir)}}},
              "mode": "direct", "digest_validate": False, "enable_xattr": True, "amplify_io": opts.amplify_io,
              "fs_prefetch": {"enable": bool(opts.prefetch), "threads_count": 4}}
    cfg_path = work / "nydusd-config.json"
    fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold credentials
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh, indent=1)
    return bootstrap, cfg_path


def mount(opts: MountOptions) -> int:
    """Mount and serve in the foreground; return the daemon's exit status."""
    from nydus_core.interfaces import Frontend
    from nydus_core.plugins import registry

    frontend: type[Frontend] | None = (
        None if opts.nydusd else registry("frontend").get("fuse", where="for nydusify mount"))
    bootstrap, cfg_path = prepare(opts)
    mp = Path(opts.mount_path)
    mp.mkdir(parents=True, exist_ok=True)
    log.info("mounting %s at %s", opts.target, mp)
    if frontend is not None:
        from nydus_core.config import load_config
        from nydus_core.interfaces import ServeOptions

        options = ServeOptions(mountpoint=str(mp.resolve()), bootstrap=str(bootstrap),
                               config=load_config(str(cfg_path)), fs_driver=opts.fs_driver)
        return frontend().serve(options)
    return _run_nydusd(opts, [str(mp.resolve()), str(bootstrap), str(cfg_path)])


def _run_nydusd(opts: MountOptions, paths: list[str]) -> int:
    mp, bootstrap, cfg_path = paths
    binary = opts.nydusd if opts.nydusd and opts.nydusd != "nydusd" else nydusd_binary()
    argv = [binary, "-M", mp, "-B", bootstrap, "-C", cfg_path, "-l", opts.log_level]
    if opts.fs_driver != "fusedev":
        argv += ["--fs-driver", opts.fs_driver]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def forward(signum: int, _frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                forward(signal.SIGINT, None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
