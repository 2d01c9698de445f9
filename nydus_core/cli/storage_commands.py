"""``nydus ls``, ``nydus cat`` (read an image through the library API, no FUSE) and
``nydus cache ls|du|gc`` (look after a cache's work_dir)."""

from __future__ import annotations

import datetime
import json
import os
import stat as statmod
import sys
from typing import Any

import click

from ..errors import ConfigError, NydusError, UsageError
from ..sizes import format_size, parse_size
from .nydus import cli


def _max_size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--max-size'") from None


def _path_error(bootstrap: str, exc: OSError) -> NydusError:
    where = f"{bootstrap}: {exc.filename}" if exc.filename else bootstrap
    return NydusError(f"{where}: {exc.strerror or exc}")


_source_options = [
    click.option("--config", "-C", "config", metavar="CFG", help="nydusd config (v1 JSON, v2 JSON/TOML)."),
    click.option("--blob-dir", "-D", "blob_dir", metavar="DIR",
                 help="Read blobs from DIR (localfs backend) instead of a config's backend."),
    click.option("--blob-id", metavar="ID", help="Data blob id of a --blob-inline-meta image."),
]


def _with_source(f: Any) -> Any:
    for opt in reversed(_source_options):
        f = opt(f)
    return f


def _mode_string(mode: int) -> str:
    return statmod.filemode(mode)


@cli.command("ls")
@click.argument("bootstrap")
@click.argument("path", default="/")
@_with_source
@click.option("-l", "long", is_flag=True, help="Long listing: mode, links, owner, size, mtime.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def ls_cmd(bootstrap: str, path: str, config: str | None, blob_dir: str | None, blob_id: str | None,
           long: bool, as_json: bool) -> None:
    """List PATH (a directory's entries, or the file itself) inside the image BOOTSTRAP (a bootstrap
    file, or an image reference when a plugin resolves them).

    Only metadata is read: no blob is fetched. ``--config`` is checked if given."""
    from ..config import load_config
    from ..fs import open_metadata
    from ..imageref import resolve_image_argument

    bootstrap, _resolved = resolve_image_argument(bootstrap)
    if config:
        load_config(config)
    fs = open_metadata(bootstrap)
    try:
        try:
            st = fs.lstat(path)
            if statmod.S_ISDIR(fs.stat(path).st_mode):
                base = path.rstrip("/")
                entries = [(name, s, f"{base}/{name}") for name, s in fs.scandir(path)]
            else:
                entries = [(os.path.basename(path.rstrip("/")) or "/", st, path)]
            rows = []
            for name, s, full in entries:
                target = fs.readlink(full) if statmod.S_ISLNK(s.st_mode) else None
                rows.append((name, s, target))
        except OSError as exc:
            raise _path_error(bootstrap, exc) from None
    finally:
        fs.close()
    if as_json:
        click.echo(json.dumps([
            {"name": n, "mode": s.st_mode, "type": _kind(s.st_mode), "ino": s.st_ino, "nlink": s.st_nlink,
             "uid": s.st_uid, "gid": s.st_gid, "size": s.st_size, "mtime": s.st_mtime_ns, "target": t}
            for n, s, t in rows], indent=2))
        return
    for name, s, target in rows:
        if not long:
            click.echo(name)
            continue
        when = format_utc_minutes(s.st_mtime_ns // 1_000_000_000)
        suffix = f" -> {target}" if target is not None else ""
        click.echo(f"{_mode_string(s.st_mode)} {s.st_nlink:>3} {s.st_uid:>5} {s.st_gid:>5} "
                   f"{s.st_size:>10} {when} {name}{suffix}")


def format_utc_minutes(seconds: int) -> str:
    """``YYYY-MM-DD HH:MM`` (UTC) of any whole number of seconds since 1970, also far beyond year 9999
    and before year 1 (what ``datetime`` cannot show): the proleptic Gregorian calendar, computed."""
    days, rem = divmod(seconds, 86400)
    # civil_from_days (H. Hinnant's algorithm), exact for any integer
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return f"{year:04d}-{month:02d}-{day:02d} {rem // 3600:02d}:{rem % 3600 // 60:02d}"


def _kind(mode: int) -> str:
    for test, name in ((statmod.S_ISDIR, "dir"), (statmod.S_ISREG, "file"), (statmod.S_ISLNK, "symlink"),
                       (statmod.S_ISCHR, "char"), (statmod.S_ISBLK, "block"), (statmod.S_ISFIFO, "fifo"),
                       (statmod.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "unknown"


@cli.command("cat")
@click.argument("bootstrap")
@click.argument("paths", nargs=-1, required=True)
@_with_source
@click.option("--cache-dir", metavar="DIR", help="With --blob-dir: keep a blob cache in DIR.")
@click.option("--metrics", "metrics_json", is_flag=True, help="Print the read metrics as JSON on stderr.")
def cat_cmd(bootstrap: str, paths: tuple[str, ...], config: str | None, blob_dir: str | None,
            blob_id: str | None, cache_dir: str | None, metrics_json: bool) -> None:
    """Write the content of files PATHS inside the image BOOTSTRAP to stdout.

    BOOTSTRAP is a bootstrap file, or an image reference when a plugin resolves them (its blobs are
    then read from the registry unless --config says otherwise). Data comes through the config's
    backend and cache (and prefetch settings), each chunk checked when the config sets
    ``digest_validate``."""
    from ..fs import open_fs
    from ..imageref import resolve_image_argument

    bootstrap, resolved = resolve_image_argument(bootstrap)
    if config and blob_dir:
        raise UsageError("--config and --blob-dir conflict; give one of them")
    source: Any = config or (None if blob_dir else resolved)
    if source is None and not blob_dir:
        raise UsageError("give --config CFG (a nydusd config) or --blob-dir DIR")
    fs = open_fs(bootstrap, source, blob_dir=blob_dir, cache_dir=cache_dir, blob_id=blob_id)
    out = sys.stdout.buffer
    try:
        for path in paths:
            try:
                f = fs.open(path, buffering=0)
            except OSError as exc:
                raise _path_error(bootstrap, exc) from None
            with f:
                step = max(fs.image.chunk_size, 1 << 20)
                while True:
                    data = f.read(step)
                    if not data:
                        break
                    try:
                        out.write(data)
                    except OSError as exc:
                        raise NydusError(f"stdout: cannot write: {exc.strerror or exc}") from None
        try:
            out.flush()
        except OSError as exc:
            raise NydusError(f"stdout: cannot write: {exc.strerror or exc}") from None
    finally:
        if metrics_json:
            click.echo(json.dumps(fs.metrics(), indent=2), err=True)
        fs.close()


# -- nydus cache -----------------------------------------------------------------------------------


def _cache_target(config: str | None, work_dir: str | None, cache_type: str) -> tuple[type[Any], str, int]:
    """Return (cache class, work_dir, configured max_size) from --config or --work-dir/--type."""
    from ..plugins import registry

    if config:
        from ..config import load_config

        cfg = load_config(config)
        if cfg.cache is None:
            raise ConfigError("the config has no cache (type dummycache, empty or missing)",
                              file=config, key="device.cache.type")
        cls = cfg.cache.plugin_class()
        wd = cfg.cache.work_dir
        if wd is None:
            raise ConfigError(f"cache type '{cfg.cache.type}' has no work_dir", file=config)
        return cls, wd, int(cfg.cache.config.get("max_size", 0) or 0)
    if not work_dir:
        raise UsageError("give --config CFG or --work-dir DIR")
    if not os.path.isdir(work_dir):
        raise UsageError(f"{work_dir}: not a directory (the cache's work_dir)")
    return registry("cache").get(cache_type), work_dir, 0


def _managed(cls: type[Any], what: str) -> Any:
    fn = getattr(cls, what, None)
    if not callable(fn):  # a CachePolicy subclass always has them (they may raise UnsupportedOperation)
        raise UsageError(f"cache type '{cls.name}' does not support 'nydus cache' commands")
    return fn


@cli.group("cache")
def cache_group() -> None:
    """Look after a local chunk cache: list blobs, disk usage, garbage collection."""


def _cache_options(f: Any) -> Any:
    f = click.option("--type", "cache_type", default="blobcache", show_default=True,
                     help="Cache type (with --work-dir).")(f)
    f = click.option("--work-dir", "-w", metavar="DIR", help="The cache's work_dir.")(f)
    f = click.option("--config", "-C", metavar="CFG", help="nydusd config whose cache section to use.")(f)
    return f


@cache_group.command("ls")
@_cache_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def cache_ls(config: str | None, work_dir: str | None, cache_type: str, as_json: bool) -> None:
    """List the cached blobs with their ready chunks, sizes and last use."""
    cls, wd, _ = _cache_target(config, work_dir, cache_type)
    entries = _managed(cls, "list_entries")(wd)
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    click.echo(f"{'BLOB':<64}  {'CHUNKS':>13}  {'READY':>8}  {'DISK':>8}  {'LAST USED':<16}  IN USE")
    for e in entries:
        total = e.get("chunk_count") or "?"
        when = datetime.datetime.fromtimestamp(e["last_used"]).strftime("%Y-%m-%d %H:%M")
        ready, usage = format_size(e["ready_bytes"]), format_size(e["disk_usage"])
        click.echo(f"{e['blob_id']:<64}  {e['ready_chunks']:>6}/{total!s:<6}  {ready:>8}  "
                   f"{usage:>8}  {when:<16}  {'yes' if e['in_use'] else 'no'}")


@cache_group.command("du")
@_cache_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def cache_du(config: str | None, work_dir: str | None, cache_type: str, as_json: bool) -> None:
    """Print the disk space the cache uses."""
    cls, wd, cap = _cache_target(config, work_dir, cache_type)
    entries = _managed(cls, "list_entries")(wd)
    total = sum(e["disk_usage"] for e in entries)
    if as_json:
        click.echo(json.dumps({"work_dir": os.path.abspath(wd), "blobs": len(entries), "disk_usage": total,
                               "max_size": cap}))
        return
    cap_text = f" (max_size {format_size(cap)})" if cap else ""
    click.echo(f"{format_size(total)}\t{total}\t{len(entries)} blobs\t{os.path.abspath(wd)}{cap_text}")


@cache_group.command("gc")
@_cache_options
@click.option("--max-size", "max_size", metavar="SIZE",
              help="Remove idle blobs until the cache fits (e.g. 10G).")
@click.option("--all", "remove_all", is_flag=True, help="Remove every blob no process has open.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def cache_gc(config: str | None, work_dir: str | None, cache_type: str, max_size: str | None,
             remove_all: bool, as_json: bool) -> None:
    """Remove idle cached blobs, least recently used first (blobs in use are never removed)."""
    cls, wd, cap = _cache_target(config, work_dir, cache_type)
    limit = _max_size(max_size) if max_size else (cap or None)
    if limit is None and not remove_all:
        raise UsageError("give --max-size SIZE or --all (or a config whose cache has max_size)")
    removed = _managed(cls, "gc")(wd, max_size=limit, remove_all=remove_all)
    if as_json:
        click.echo(json.dumps({"removed": removed}, indent=2))
        return
    for e in removed:
        click.echo(f"removed {e['blob_id']} ({format_size(e['disk_usage'])})")
    click.echo(f"{len(removed)} blobs removed, {format_size(sum(e['disk_usage'] for e in removed))} freed")
