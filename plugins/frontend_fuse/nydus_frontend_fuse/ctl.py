"""``nydusctl``: talk to a running nydusd over its API socket (upstream's subcommands).

``nydusctl --sock S [--raw] info | set log-level V | metrics [backend|cache|fsstats|files|pattern]
[--interval N] [--id MOUNTPOINT] | mount --source B --config C --mountpoint /sub [--type rafs] |
umount --mountpoint /sub | exit``. The HTTP client is httpx with its unix-socket transport.

Ours beside upstream's: ``prefetch-list [--id MOUNTPOINT] [-o FILE]`` writes the access pattern as
the prefetch list that ``nydus-image create --prefetch-policy fs`` and ``nydusify convert
--prefetch-patterns`` read on stdin.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from http import HTTPStatus
from typing import Any

import click
import httpx

from nydus_core.cli.convention import CONTEXT_SETTINGS
from nydus_core.cli.runner import run_main
from nydus_core.errors import NydusError, UsageError
from nydus_core.logsetup import LEVEL_NAMES
from nydus_core.sizes import format_size

from . import __version__


class ApiError(NydusError):
    """The daemon answered an API call with an error, or could not be reached."""


class ApiClient:
    """A client of nydusd's HTTP API on a unix socket: httpx with its unix-socket transport.

    One keep-alive connection pool per client (httpx clients may be shared between threads); call
    :meth:`close` (or use it as a context manager) when done."""

    def __init__(self, sock: str, timeout: float = 60.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self._client: httpx.Client | None = None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _http(self) -> httpx.Client:
        if self._client is None:
            # httpx logs every request at INFO and httpcore every step at DEBUG: a daemon's log
            # (the snapshotter's) wants neither; callers log what matters
            for name in ("httpx", "httpcore"):
                logging.getLogger(name).setLevel(logging.WARNING)
            # no TLS on a unix socket: verify=False spares loading the CA bundle
            transport = httpx.HTTPTransport(uds=self.sock, verify=False)
            self._client = httpx.Client(transport=transport, base_url="http://nydusd", timeout=self.timeout)
        return self._client

    def request(self, method: str, path: str, query: dict[str, str] | None = None, *,
                content: bytes | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        """Send one request and return the answer, whatever its status; ApiError if unreachable."""
        try:
            return self._http().request(method, path, params=query, content=content, headers=headers)
        except httpx.TimeoutException:
            raise ApiError(f"{self.sock}: no answer in {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"{self.sock}: {_reason(exc)}") from None

    def call(self, method: str, path: str, query: dict[str, str] | None = None, body: Any = None) -> Any:
        """Send one request; return the decoded JSON answer (None for 204); ApiError on failure."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if payload is not None else None
        resp = self.request(method, path, query, content=payload, headers=headers)
        data = resp.content
        decoded: Any = None
        if data:
            try:
                decoded = json.loads(data)
            except ValueError:
                decoded = data.decode("utf-8", "replace")
        if resp.status_code >= 400:
            msg = decoded.get("message") if isinstance(decoded, dict) else decoded
            raise ApiError(f"{method} {path}: {resp.status_code} {_phrase(resp)}: {msg}")
        return decoded


def _phrase(resp: httpx.Response) -> str:
    """The status's reason phrase (the server may send none)."""
    if resp.reason_phrase:
        return resp.reason_phrase
    try:
        return HTTPStatus(resp.status_code).phrase
    except ValueError:
        return "error"


def _reason(exc: BaseException) -> str:
    """Say why the socket could not be used (the OSError under httpx's exception, when there is one)."""
    cur: BaseException | None = exc
    while cur is not None and not isinstance(cur, OSError):
        cur = cur.__cause__ or cur.__context__
    if isinstance(cur, FileNotFoundError):
        return "no such API socket (is nydusd running with --apisock?)"
    if isinstance(cur, ConnectionRefusedError):
        return "connection refused (the daemon is not running)"
    if cur is not None:
        return cur.strerror or str(cur)
    return str(exc) or type(exc).__name__


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
    client: ApiClient | _NoSocket = _NoSocket()
    if sock:
        client = ApiClient(sock)
        ctx.call_on_close(client.close)
    ctx.obj = {"client": client, "raw": raw}


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
            fetched = format_size(desc["fetched"], long=True)
            click.echo(f"      fetched {fetched} of {format_size(total, long=True)} of blob data{share}")


@nydusctl.group("set")
def set_group() -> None:
    """Change a daemon setting."""


@set_group.command("log-level")
@click.argument("level", type=click.Choice(LEVEL_NAMES))
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


def prefetch_list_text(pattern: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The prefetch list of an access pattern (``GET /api/v1/metrics/pattern``): one absolute path a
    line, first read first; and the paths that list cannot hold (a newline in the name)."""
    lines, left_out, seen = [], [], set()
    for rec in pattern:
        path = rec.get("path") or ""
        if not path or path in seen:
            continue
        seen.add(path)
        if "\n" in path:
            left_out.append(path)
        else:
            lines.append(path + "\n")
    return "".join(lines), left_out


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"{path}: cannot write the prefetch list: {exc.strerror or exc}") from None


@nydusctl.command("prefetch-list")
@click.option("--id", "ident", default=None, help="Instance id (its mountpoint in the daemon).")
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False),
              help="Write the list to this file (replaced atomically) instead of stdout.")
@click.pass_obj
def prefetch_list(obj: dict[str, Any], ident: str | None, output: str | None) -> None:
    """Write the files read so far, first read first, as a prefetch list.

    The daemon's config needs "access_pattern": true. The list is what `nydus-image create
    --prefetch-policy fs` and `nydusify convert --prefetch-patterns` read on stdin: the image
    built with it prefetches exactly these files.

    \b
    Examples:
      nydusctl --sock /run/nydusd.sock prefetch-list -o app.prefetch
      nydus-image create --prefetch-policy fs -B new.boot -D blobs/ rootfs/ < app.prefetch
      nydusify convert --prefetch-patterns --source SRC --target DST < app.prefetch
    """
    query = {"id": ident} if ident else None
    text, left_out = prefetch_list_text(obj["client"].call("GET", _METRICS["pattern"], query))
    for path in left_out:
        click.echo(f"warning: {path!r} left out: a prefetch list cannot hold a name with a newline",
                   err=True)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        _write_atomically(output, text)
        click.echo(f"{output}: {text.count(chr(10))} paths", err=True)


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
