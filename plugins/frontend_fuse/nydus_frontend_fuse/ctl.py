"""``nydusctl``: talk to a running nydusd over its API socket (upstream's subcommands).

``nydusctl --sock S [--raw] info | set log-level V | metrics [backend|cache|fsstats|files|pattern]
[--interval N] [--id MOUNTPOINT] | mount --source B --config C --mountpoint /sub [--type rafs] |
umount --mountpoint /sub | exit``. Uses ``http.client`` over ``AF_UNIX``: no extra dependency.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any
from urllib.parse import urlencode

import click

from nydus_core.cli.convention import CONTEXT_SETTINGS
from nydus_core.cli.runner import run_main
from nydus_core.errors import NydusError, UsageError

from . import __version__


class ApiError(NydusError):
    """The daemon answered an API call with an error, or could not be reached."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class ApiClient:
    """A tiny client of nydusd's HTTP API on a unix socket."""

    def __init__(self, sock: str, timeout: float = 60.0) -> None:
        self.sock = sock
        self.timeout = timeout

    def call(self, method: str, path: str, query: dict[str, str] | None = None, body: Any = None) -> Any:
        """Send one request; return the decoded JSON answer (None for 204); ApiError on failure."""
        url = path + ("?" + urlencode(query) if query else "")
        payload = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if payload is not None else {}
        conn = _UnixConnection(self.sock, self.timeout)
        try:
            conn.request(method, url, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except FileNotFoundError:
            raise ApiError(f"{self.sock}: no such API socket (is nydusd running with --apisock?)") from None
        except ConnectionRefusedError:
            raise ApiError(f"{self.sock}: connection refused (the daemon is not running)") from None
        except OSError as exc:
            raise ApiError(f"{self.sock}: {exc}") from None
        finally:
            conn.close()
        decoded: Any = None
        if data:
            try:
                decoded = json.loads(data)
            except ValueError:
                decoded = data.decode("utf-8", "replace")
        if resp.status >= 400:
            msg = decoded.get("message") if isinstance(decoded, dict) else decoded
            raise ApiError(f"{method} {path}: {resp.status} {resp.reason}: {msg}")
        return decoded


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _print(obj: Any, raw: bool) -> None:
    if raw:
        click.echo(json.dumps(obj))
    else:
        click.echo(json.dumps(obj, indent=2, sort_keys=True))


class _NoSocket:
    """Stands for the client when ``--sock`` is missing (so that ``nydusctl info -h`` still works)."""

    def call(self, method: str, path: str, query: dict[str, str] | None = None, body: Any = None) -> Any:
        """Refuse: there is no socket to talk to."""
        raise UsageError("nydusctl needs the daemon's API socket: --sock/-S PATH")


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="nydusctl")
@click.option("--sock", "-S", type=click.Path(dir_okay=False), help="nydusd API socket (required).")
@click.option("--raw", is_flag=True, help="Print the daemon's JSON as is.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def nydusctl(ctx: click.Context, sock: str | None, raw: bool, debug: bool) -> None:
    """Query and control a running nydusd through its API socket.

    \b
    Examples:
      nydusctl --sock /run/nydusd.sock info
      nydusctl --sock /run/nydusd.sock metrics backend --interval 2
    """
    ctx.obj = {"client": ApiClient(sock) if sock else _NoSocket(), "raw": raw}


@nydusctl.command()
@click.pass_obj
def info(obj: dict[str, Any]) -> None:
    """Show the daemon's version, state and mounted images."""
    data = obj["client"].call("GET", "/api/v1/daemon")
    if obj["raw"]:
        _print(data, True)
        return
    version = data.get("version", {})
    click.echo(f"Version:  {version.get('package_ver', '?')} ({version.get('rustc', '')})")
    click.echo(f"State:    {data.get('state')}")
    click.echo(f"ID:       {data.get('id') or '-'}")
    mounts = data.get("backend_collection") or {}
    click.echo(f"Mounts:   {len(mounts)}")
    for mp, desc in sorted(mounts.items()):
        click.echo(f"  {mp}  {desc.get('backend_type', '')}  {desc.get('source', '')}")
        if "fetched" in desc:
            total = desc.get("blobs_size") or 0
            share = f" ({100 * desc['fetched'] / total:.1f} %)" if total else ""
            click.echo(f"      fetched {_human(desc['fetched'])} of {_human(total)} of blob data{share}")


@nydusctl.group("set")
def set_group() -> None:
    """Change a daemon setting."""


@set_group.command("log-level")
@click.argument("level", type=click.Choice(["trace", "debug", "info", "warn", "error"]))
@click.pass_obj
def set_log_level(obj: dict[str, Any], level: str) -> None:
    """Change the daemon's log level."""
    obj["client"].call("PUT", "/api/v1/daemon", body={"log_level": level})
    click.echo(f"log level set to {level}")


_METRICS = {
    "fsstats": "/api/v1/metrics",
    "backend": "/api/v1/metrics/backend",
    "cache": "/api/v1/metrics/blobcache",
    "files": "/api/v1/metrics/files",
    "pattern": "/api/v1/metrics/pattern",
    "inflight": "/api/v1/metrics/inflight",
}


@nydusctl.command()
@click.argument("kind", required=False, default="fsstats", type=click.Choice(sorted(_METRICS)))
@click.option("--interval", "-I", type=click.FloatRange(min=0.1), default=None,
              help="Repeat every this many seconds.")
@click.option("--id", "ident", default=None, help="Instance id (its mountpoint in the daemon).")
@click.pass_obj
def metrics(obj: dict[str, Any], kind: str, interval: float | None, ident: str | None) -> None:
    """Show metrics: fsstats (default), backend, cache, files, pattern, inflight."""
    query = {"id": ident} if ident else None
    while True:
        _print(obj["client"].call("GET", _METRICS[kind], query), obj["raw"])
        if interval is None:
            return
        time.sleep(interval)


@nydusctl.command()
@click.option("--source", "-s", required=True, help="Bootstrap path.")
@click.option("--config", "-c", "config", required=True, type=click.Path(exists=True, dir_okay=False),
              help="nydusd config file for this image.")
@click.option("--mountpoint", "-m", required=True, help="Sub-path inside the daemon, e.g. /img1.")
@click.option("--type", "-t", "fs_type", default="rafs", type=click.Choice(["rafs", "passthrough_fs"]),
              help="Filesystem type (rafs; passthrough_fs is refused by the daemon).")
@click.option("--prefetch-files", multiple=True, help="A path to prefetch (repeatable).")
@click.pass_obj
def mount(obj: dict[str, Any], source: str, config: str, mountpoint: str, fs_type: str,
          prefetch_files: tuple[str, ...]) -> None:
    """Mount an image under a sub-path of the daemon."""
    try:
        with open(config, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise UsageError(f"{config}: {exc.strerror}") from None
    body = {"source": source, "fs_type": fs_type, "config": text, "prefetch_files": list(prefetch_files)}
    obj["client"].call("POST", "/api/v1/mount", {"mountpoint": mountpoint}, body)
    click.echo(f"mounted {source} at {mountpoint}")


@nydusctl.command()
@click.option("--mountpoint", "-m", required=True, help="Sub-path inside the daemon.")
@click.pass_obj
def umount(obj: dict[str, Any], mountpoint: str) -> None:
    """Unmount the image at a sub-path of the daemon."""
    obj["client"].call("DELETE", "/api/v1/mount", {"mountpoint": mountpoint})
    click.echo(f"unmounted {mountpoint}")


@nydusctl.command("exit")
@click.pass_obj
def exit_cmd(obj: dict[str, Any]) -> None:
    """Ask the daemon to unmount and exit."""
    obj["client"].call("PUT", "/api/v1/daemon/exit")


def main() -> None:
    """Entry point of the ``nydusctl`` command."""
    raise SystemExit(run_main(nydusctl, prog_name="nydusctl"))
