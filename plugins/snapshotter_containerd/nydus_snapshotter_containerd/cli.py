"""``containerd-nydus-grpc``: run the snapshotter on its socket until SIGTERM/SIGINT.

``containerd-nydus-grpc [--config FILE] [--address SOCK] [--root DIR] [--log-level L]``; flags
override the file. containerd dials it as a proxy plugin::

    [proxy_plugins.nydus]
      type = "snapshot"
      address = "/run/containerd-nydus/containerd-nydus-grpc.sock"
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import click

from nydus_core.cli.convention import CONTEXT_SETTINGS
from nydus_core.cli.runner import run_main
from nydus_core.errors import NydusError
from nydus_core.logsetup import LEVEL_NAMES, setup_logging

from . import __version__


@click.command(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="containerd-nydus-grpc")
@click.option("--config", "config_path", default=None, help="Snapshotter config file (TOML).")
@click.option("--address", default=None, help="gRPC unix socket to serve on (overrides the config).")
@click.option("--root", default=None, help="State directory (overrides the config).")
@click.option("--nydusd", "--nydusd-path", "nydusd_cmd", default=None,
              help="nydusd command (overrides the config).")
@click.option("--nydusd-config", default=None,
              help="nydusd config template, JSON v1 (overrides the config's [daemon] section).")
@click.option("--daemon-mode", default=None, type=click.Choice(["shared"]),
              help="One nydusd per snapshotter (the only mode; upstream's flag).")
@click.option("--fs-driver", default=None, type=click.Choice(["fusedev"]),
              help="How images are served (FUSE only; upstream's flag).")
@click.option("--log-level", default=None, type=click.Choice(LEVEL_NAMES), help="Log level.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def serve(config_path: str | None, address: str | None, root: str | None, nydusd_cmd: str | None,
          nydusd_config: str | None, daemon_mode: str | None, fs_driver: str | None,
          log_level: str | None, debug: bool) -> None:
    """containerd proxy snapshotter for Nydus images (lazy pulls through nydusd).

    \b
    Example:
      containerd-nydus-grpc --config /etc/nydus/config.toml --root /var/lib/containerd-nydus
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
    if log_level:
        cfg.log_level = log_level
    setup_logging(cfg.log_level)
    sock = Path(cfg.address)
    sock.parent.mkdir(parents=True, exist_ok=True)
    if sock.exists() or sock.is_symlink():
        if not sock.is_socket():
            raise NydusError(f"{sock}: exists and is not a socket")
        sock.unlink()
    sn = Snapshotter(cfg)
    sn.start()
    server = make_server(sn, str(sock))
    server.start()
    os.chmod(sock, 0o660)
    logging.getLogger("containerd-nydus").info("serving snapshots on %s (root %s)", sock, cfg.root)
    done = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    done.wait()
    server.stop(grace=5).wait()
    sn.close()
    sock.unlink(missing_ok=True)


def main() -> int:
    """Console-script entry point."""
    return run_main(serve, prog_name="containerd-nydus-grpc")
