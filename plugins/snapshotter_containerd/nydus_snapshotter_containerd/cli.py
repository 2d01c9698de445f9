"""``containerd-nydus-grpc``: run the snapshotter on its socket until SIGTERM/SIGINT.

Upstream's flags: ``--config FILE``, ``--root DIR``, ``--address SOCK``, ``--nydusd PATH``,
``--nydus-image PATH``, ``--nydusd-config FILE`` (``--config-path``), ``--nydus-overlayfs-path``,
``--daemon-mode``, ``--fs-driver``, ``--log-level``, ``--log-to-stdout``, ``--version``. A flag
that is given overrides the file. containerd dials it as a proxy plugin::

    [proxy_plugins.nydus]
      type = "snapshot"
      address = "/run/containerd-nydus/containerd-nydus-grpc.sock"
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
from pathlib import Path

import click

from nydus_core.cli.convention import CONTEXT_SETTINGS
from nydus_core.cli.runner import run_main
from nydus_core.errors import NydusError, UsageError
from nydus_core.logsetup import DEFAULT_FORMAT, LEVEL_NAMES, level_of

from . import __version__
from .config import SnapshotterConfig
from .upstream_keys import DAEMON_MODES, FS_DRIVERS

log = logging.getLogger("containerd-nydus")


def setup_snapshotter_logging(cfg: SnapshotterConfig) -> None:
    """As upstream: ``log.log_to_stdout`` sends everything to stdout; otherwise records go to
    ``<log.dir>/nydus-snapshotter.log`` (rotated at ``log_rotation_max_size`` MB, keeping
    ``log_rotation_max_backups`` files) and to stderr (the service manager's journal)."""
    handlers: list[logging.Handler] = []
    if cfg.log_to_stdout:
        handlers.append(logging.StreamHandler(sys.stdout))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
        path = cfg.log_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.handlers.RotatingFileHandler(
                path, maxBytes=cfg.log_rotation_max_size << 20, backupCount=cfg.log_rotation_max_backups))
        except OSError as exc:
            raise UsageError(f"log.dir: {path.parent}: {exc.strerror or exc}") from None
    for h in handlers:
        h.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    logging.basicConfig(level=level_of(cfg.log_level), handlers=handlers, force=True)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="containerd-nydus-grpc")
@click.option("--config", "config_path", default=None, help="Snapshotter config (TOML, upstream's format).")
@click.option("--address", default=None, help="gRPC unix socket to serve on (overrides the config).")
@click.option("--root", default=None, help="State directory (overrides the config).")
@click.option("--nydusd", "--nydusd-path", "nydusd_cmd", default=None,
              help="nydusd binary (daemon.nydusd_path).")
@click.option("--nydus-image", "nydus_image", default=None,
              help="nydus-image binary (daemon.nydusimage_path; used upstream only by tarfs).")
@click.option("--nydusd-config", "--config-path", "nydusd_config", default=None,
              help="nydusd config template, JSON v1 (daemon.nydusd_config).")
@click.option("--nydus-overlayfs-path", default=None,
              help="nydus-overlayfs helper (snapshot.nydus_overlayfs_path; not implemented, logged).")
@click.option("--daemon-mode", default=None, type=click.Choice(list(DAEMON_MODES)),
              help="dedicated (= multiple, one nydusd per image, the default) or shared (one nydusd).")
@click.option("--fs-driver", default=None, type=click.Choice(list(FS_DRIVERS)),
              help="fusedev (default) or erofs; upstream's others are logged and served as fusedev.")
@click.option("--log-level", default=None, type=click.Choice(LEVEL_NAMES), help="Log level (log.level).")
@click.option("--log-to-stdout", is_flag=True, default=None, help="Log to stdout instead of files.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def serve(config_path: str | None, address: str | None, root: str | None, nydusd_cmd: str | None,
          nydus_image: str | None, nydusd_config: str | None, nydus_overlayfs_path: str | None,
          daemon_mode: str | None, fs_driver: str | None, log_level: str | None,
          log_to_stdout: bool | None, debug: bool) -> None:
    """containerd proxy snapshotter for Nydus images (lazy pulls through nydusd).

    \b
    Example:
      containerd-nydus-grpc --config /etc/nydus/config.toml --log-to-stdout
    """
    from .config import load_config, load_daemon_template
    from .service import make_server
    from .snapshotter import Snapshotter

    cfg = load_config(config_path)
    if address:
        cfg.address = address
    if root:
        cfg.root = root
    if nydusd_cmd:
        cfg.nydusd = nydusd_cmd
    if nydusd_config:
        cfg.daemon_template = load_daemon_template(Path(nydusd_config), "--nydusd-config")
    if nydus_image:
        cfg.warnings.append("--nydus-image: used upstream only by tarfs conversion, which is not implemented")
    if nydus_overlayfs_path:
        cfg.warnings.append("--nydus-overlayfs-path: the nydus-overlayfs mount helper is not implemented")
    if daemon_mode:
        cfg.set_daemon_mode(daemon_mode, "--daemon-mode")
    if fs_driver:
        cfg.set_fs_driver(fs_driver, "--fs-driver")
    if log_level:
        cfg.log_level = log_level
    if log_to_stdout:
        cfg.log_to_stdout = True
    setup_snapshotter_logging(cfg)
    for line in cfg.warnings:
        log.warning("%s", line)
    sock = Path(cfg.address)
    sock.parent.mkdir(parents=True, exist_ok=True)
    if sock.exists() or sock.is_symlink():
        if not sock.is_socket():
            raise NydusError(f"{sock}: exists and is not a socket")
        sock.unlink()
    # from here a SIGTERM is a clean stop, even one that arrives while we start
    done = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sn = Snapshotter(cfg)
    sn.start()
    server = make_server(sn, str(sock))
    server.start()
    os.chmod(sock, 0o660)
    if cfg.uid or cfg.gid:
        os.chown(sock, cfg.uid, cfg.gid)
    controller = None
    if cfg.system_enable:
        from .system import SystemController

        controller = SystemController(sn, Path(cfg.system_address), uid=cfg.system_uid, gid=cfg.system_gid)
        controller.start()
    log.info("serving snapshots on %s (root %s, daemon_mode %s, fs_driver %s)", sock, cfg.root,
             cfg.daemon_mode, cfg.fs_driver)
    done.wait()
    if controller is not None:
        controller.stop()
    server.stop(grace=5).wait()
    sn.close()
    sock.unlink(missing_ok=True)


def main() -> int:
    """Console-script entry point."""
    return run_main(serve, prog_name="containerd-nydus-grpc")
