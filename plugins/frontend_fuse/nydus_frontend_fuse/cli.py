"""The ``nydusd`` command line, with upstream's flags (and its ``fuse`` subcommand form).

``nydusd -C CFG -M MNT -B BOOT`` and ``nydusd fuse -C CFG -M MNT -B BOOT`` are the same; global
flags (``-A``, ``-C``, ``-l``, ``-L``, ``--id``...) may come before or after ``fuse``. Started
without ``--bootstrap`` the daemon serves an empty root and mounts images under sub-paths through
``POST /api/v1/mount``. Errors are one line and a non-zero exit (``--debug`` for a traceback).
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from nydus_core.cli.convention import CONTEXT_SETTINGS
from nydus_core.cli.runner import run_main
from nydus_core.errors import UsageError
from nydus_core.interfaces import ServeOptions
from nydus_core.logsetup import LEVEL_NAMES, setup_logging

from . import __version__

if TYPE_CHECKING:
    from .daemon import FuseTuning
    from .ops import KernelCaching

#: nydusd's log records: ``[time] LEVEL message``, like upstream's.
LOG_FORMAT = "[%(asctime)s] %(levelname)s %(message)s"

GLOBAL_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("-A", "--apisock", default=None,
                 help="Unix socket for the HTTP admin API."),
    click.option("-C", "--config", "config_path", default=None,
                 help="Daemon config (JSON v1, JSON v2 or TOML v2)."),
    click.option("--id", "daemon_id", default=None, help="Service instance id (shown by the API)."),
    click.option("-l", "--log-level", default=None,
                 type=click.Choice(LEVEL_NAMES, case_sensitive=False),
                 help="Log level [default: info]."),
    click.option("-L", "--log-file", default=None,
                 help="Log file ('.log' is appended when the name has no extension)."),
    click.option("--log-rotation-size", type=click.IntRange(min=0), default=None,
                 help="Rotate the log file at this many MB [default: 0, disabled]."),
    click.option("--rlimit-nofile", type=click.IntRange(min=0), default=None,
                 help="Open-file limit to set [default: 1000000; 0 leaves it unchanged]."),
    click.option("--supervisor", default=None,
                 help="Supervisor socket: the FUSE descriptor and state go there (failover; erofs driver)."),
    click.option("--upgrade", is_flag=True, default=None,
                 help="Wait for PUT /api/v1/daemon/fuse/takeover instead of mounting (erofs driver)."),
    click.option("--debug", is_flag=True, default=None, help="Show tracebacks on errors."),
]

FUSE_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("-M", "--mountpoint", default=None,
                 help="FUSE mountpoint (required)."),
    click.option("-B", "--bootstrap", default=None,
                 help="RAFS metadata (bootstrap) file to serve at /."),
    click.option("-D", "--localfs-dir", default=None,
                 help="Serve blobs from this directory (localfs backend); conflicts with --config."),
    click.option("-s", "--shared-dir", default=None, help="passthroughfs directory (not supported)."),
    click.option("--prefetch-files", default=None,
                 help="File listing paths to prefetch, one per line (requires --bootstrap)."),
    click.option("-m", "--virtual-mountpoint", default=None,
                 help="Path inside the FUSE filesystem where the bootstrap is mounted [default: /]."),
    click.option("--failover-policy", default=None, type=click.Choice(["none", "resend", "flush"]),
                 help="Requests in flight at a takeover: resend (default), flush (EIO) or none."),
    click.option("--fuse-threads", "--thread-num", "threads", type=click.IntRange(1, 1024), default=None,
                 help="Worker threads for data reads [default: 4]."),
    click.option("--fs-driver", type=click.Choice(["fusedev", "erofs"]), default=None,
                 help="How the image is served: fusedev (every operation in this daemon) or erofs "
                      "(the kernel's EROFS driver reads the bootstrap, the daemon serves blob data "
                      "over FUSE; RAFS v6, root, Linux 6.12+) [default: fusedev]."),
    click.option("--writable", is_flag=True, default=None, help="Read-write mount (not supported)."),
    click.option("--dedup-db", default=None, help="Chunk-dedup database (not supported)."),
    click.option("--readahead-kb", type=click.IntRange(min=0), default=None,
                 help="Kernel read-ahead of the mount in KiB [default: 0, the kernel's 128 KiB]. "
                      "Beyond upstream."),
    click.option("--store-on-open-kb", type=click.IntRange(min=0), default=None,
                 help="Push files up to this size (KiB) into the page cache when opened, if their data "
                      "is in the local cache [default: 1024; 0 disables]. Beyond upstream."),
    click.option("--kernel-cache-timeout", type=click.FloatRange(min=0), default=None,
                 help="Seconds the kernel may cache entries, attributes and negative lookups "
                      "[default: 86400: an image never changes]. Beyond upstream."),
    click.option("--no-inline-reads", is_flag=True, default=None,
                 help="Serve every read on a worker thread, cache hits too (for measurements). "
                      "Beyond upstream."),
    click.option("--eager-fuse-workers", is_flag=True, default=None,
                 help="Let pyfuse3 start its second worker task at the first request, not only when "
                      "a read has to wait (for measurements). Beyond upstream."),
    click.option("--no-allow-other", is_flag=True, default=None,
                 help="Mount without allow_other: only the user running nydusd may use the mount "
                      "(not even root). A non-root user needs this unless user_allow_other is in "
                      "/etc/fuse.conf. Beyond upstream."),
    click.option("--blobdev-keep-cache", is_flag=True, default=None,
                 help="erofs driver: let the kernel page-cache the blob devices too (FOPEN_KEEP_CACHE; "
                      "default: direct I/O, the EROFS mount caches file data itself). Beyond upstream."),
    click.option("--no-direct-blob-files", is_flag=True, default=None,
                 help="erofs driver: serve every blob through the blob-device filesystem, even one "
                      "whose cache file is complete (for measurements). Beyond upstream."),
    click.option("--no-keep-cache", is_flag=True, default=None,
                 help="Drop a file's page cache at every open (FOPEN_KEEP_CACHE off). Beyond upstream."),
]


def _apply(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def deco(fn: Any) -> Any:
        for opt in reversed(options):
            fn = opt(fn)
        return fn
    return deco


@click.group(invoke_without_command=True, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="nydusd")
@_apply(GLOBAL_OPTIONS)
@_apply(FUSE_OPTIONS)
@click.pass_context
def nydusd(ctx: click.Context, /, **params: Any) -> None:
    """nydusd: serve RAFS (Nydus) images through FUSE, lazily.

    \b
    Examples:
    nydusd -C config.json -M /mnt -B image.boot
    nydusd fuse -D ./blobs -M /mnt -B image.boot --apisock /run/nydusd.sock
    nydusd -C config.json -M /mnt -A /run/nydusd.sock   # mount images via the API
    """
    ctx.obj = params
    if ctx.invoked_subcommand is None:
        _serve(params)


@nydusd.command("fuse")
@_apply(GLOBAL_OPTIONS)
@_apply(FUSE_OPTIONS)
@click.pass_context
def fuse_cmd(ctx: click.Context, /, **params: Any) -> None:
    """Run the FUSE server (the default when no subcommand is given)."""
    merged = dict(ctx.obj or {})
    merged.update({k: v for k, v in params.items() if v is not None})
    _serve(merged)


for _name, _what in (("virtiofs", "vhost-user-fs"), ("singleton", "fscache/blobcache services"),
                     ("nbd", "NBD export"), ("uffd", "userfaultfd block device")):
    def _unsupported(_n: str = _name, _w: str = _what, **_: Any) -> None:
        raise UsageError(f"'nydusd {_n}' ({_w}) is not supported by nydus-py; use the FUSE server")

    nydusd.command(_name, context_settings={"ignore_unknown_options": True,
                                            "allow_extra_args": True},
                   help=f"Not supported by nydus-py ({_what}).")(_unsupported)


def _read_prefetch_list(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            lines = [line.strip() for line in fh]
    except OSError as exc:
        raise UsageError(f"--prefetch-files {path}: {exc.strerror}") from None
    paths = [p for p in lines if p and not p.startswith("#")]
    for p in paths:
        if not p.startswith("/"):
            raise UsageError(f"--prefetch-files {path}: '{p}' is not an absolute path in the image")
    return paths


def _set_rlimit(n: int | None) -> None:
    want = 1_000_000 if n is None else n
    if want == 0:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if os.geteuid() == 0 else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        except (ValueError, OSError):
            logging.getLogger("nydusd").info("could not raise RLIMIT_NOFILE (kept %d)", soft)


def build_settings(params: dict[str, Any]) -> tuple[ServeOptions, FuseTuning]:
    """Turn parsed flags into the frontend's :class:`~nydus_core.interfaces.ServeOptions` and
    :class:`~.daemon.FuseTuning` (config loaded and validated)."""
    from nydus_core.config import NydusConfig, load_config

    from .daemon import DEFAULT_READAHEAD_KB, FuseTuning

    for flag, what in (("shared_dir", "-s/--shared-dir (passthroughfs)"), ("writable", "--writable"),
                       ("dedup_db", "--dedup-db")):
        if params.get(flag):
            raise UsageError(f"{what} is not supported by nydus-py")
    if (params.get("fs_driver") or "fusedev") != "erofs":
        for flag, what in (("upgrade", "--upgrade"), ("supervisor", "--supervisor")):
            if params.get(flag):
                raise UsageError(f"{what} (failover) needs --fs-driver erofs; a fusedev daemon is "
                                 "restarted and remounted instead")
    if params.get("upgrade") and not params.get("supervisor"):
        raise UsageError("--upgrade needs --supervisor SOCK (where the state is taken over from)")
    if params.get("supervisor") and not params.get("daemon_id"):
        raise UsageError("--supervisor needs --id ID")
    mountpoint = params.get("mountpoint")
    if not mountpoint:
        raise UsageError("-M/--mountpoint is required")
    config_path, localfs = params.get("config_path"), params.get("localfs_dir")
    if config_path and localfs:
        raise UsageError("-D/--localfs-dir conflicts with -C/--config")
    config: NydusConfig | None = None
    if config_path:
        config = load_config(config_path)
    elif localfs:
        config = NydusConfig.from_localfs_dir(localfs)
    prefetch = _read_prefetch_list(params["prefetch_files"]) if params.get("prefetch_files") else []
    if prefetch and not params.get("bootstrap"):
        raise UsageError("--prefetch-files requires -B/--bootstrap")
    ra = params.get("readahead_kb")
    options = ServeOptions(
        mountpoint=mountpoint,
        bootstrap=params.get("bootstrap"),
        config=config,
        virtual_mountpoint=params.get("virtual_mountpoint") or "/",
        apisock=params.get("apisock"),
        prefetch_files=tuple(prefetch),
        threads=params.get("threads") or 4,
        daemon_id=params.get("daemon_id") or "",
        supervisor=params.get("supervisor") or None,
        fs_driver=params.get("fs_driver") or "fusedev",
    )
    tuning = FuseTuning(
        readahead_kb=DEFAULT_READAHEAD_KB if ra is None else ra,
        cache=_cache_policy(params),
        inline_hits=not params.get("no_inline_reads"),
        lazy_workers=not params.get("eager_fuse_workers"),
        blobdev_direct_io=not params.get("blobdev_keep_cache"),
        direct_blob_files=not params.get("no_direct_blob_files"),
        allow_other=not params.get("no_allow_other"),
        upgrade=bool(params.get("upgrade")),
        failover_policy=params.get("failover_policy") or "resend",
    )
    return options, tuning


def _cache_policy(params: dict[str, Any]) -> KernelCaching:
    from .daemon import DEFAULT_STORE_ON_OPEN_KB
    from .ops import KernelCaching

    store = params.get("store_on_open_kb")
    timeout = params.get("kernel_cache_timeout")
    kwargs: dict[str, Any] = {
        "store_on_open": (DEFAULT_STORE_ON_OPEN_KB if store is None else store) << 10,
        "keep_cache": not params.get("no_keep_cache"),
    }
    if timeout is not None:
        kwargs.update(entry_timeout=timeout, attr_timeout=timeout, negative_timeout=timeout)
    return KernelCaching(**kwargs)


def _serve(params: dict[str, Any]) -> None:
    from .frontend import FuseFrontend
    from .malloc_tuning import tune_malloc

    tune_malloc()  # before any worker thread starts

    setup_logging(params.get("log_level") or "info", params.get("log_file"),
                  rotation_mb=params.get("log_rotation_size") or 0, fmt=LOG_FORMAT)
    options, tuning = build_settings(params)
    _set_rlimit(params.get("rlimit_nofile"))
    FuseFrontend(tuning).serve(options)


def nydusd_main() -> None:
    """Entry point of the ``nydusd`` command."""
    raise SystemExit(run_main(nydusd, prog_name="nydusd"))
