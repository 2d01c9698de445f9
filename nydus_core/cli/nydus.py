"""The ``nydus`` command group. Plugins add commands to it through ``nydus_register_commands``."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import __version__
from ..errors import UsageError
from ..plugins import CAPABILITIES, PluginManager, get_manager
from .convention import CONTEXT_SETTINGS
from .runner import run_main


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="nydus")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def cli(debug: bool) -> None:
    """nydus-py: build, inspect and serve Nydus (RAFS) container images.

    \b
    Examples:
      nydus plugins --check compressor:zstd
      nydus cat image.boot /etc/os-release --blob-dir ./blobs
    """


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.option(
    "--check",
    "checks",
    metavar="KIND:NAME",
    multiple=True,
    help="Exit non-zero, with the reason, unless NAME is available as a KIND (e.g. backend:s3). "
    "Repeatable; nothing else is printed on success but one line per name.",
)
def plugins_cmd(as_json: bool, checks: tuple[str, ...]) -> None:
    """List installed plugins, what each provides, load failures and name clashes.

    With --check, verify that plugins are available instead (useful in scripts):
    `nydus plugins --check backend:s3 --check compressor:zstd`.
    """
    manager = get_manager()
    if checks:
        _check(manager, checks)
        return
    manager.failures()  # calls every register hook, so each record says what it provides
    records = sorted(manager.records.values(), key=lambda r: (r.name != "core", r.name))
    if as_json:
        out: dict[str, Any] = {
            "plugins": [r.as_dict() for r in records],
            "capabilities": {kind: manager.registry(kind).names() for kind in CAPABILITIES},
            "conflicts": manager.conflicts(),
        }
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    rows = [("PLUGIN", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS")]
    for r in records:
        provides = "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in sorted(r.provides.items()) if v)
        status = "disabled" if r.disabled else (f"FAILED: {r.error}" if r.error else "ok")
        rows.append((r.name, r.distribution or "-", r.version or "-", provides or "-", status))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    for message in manager.conflicts():
        click.echo(f"CONFLICT: {message}")


def _check(manager: PluginManager, checks: tuple[str, ...]) -> None:
    """Look each KIND:NAME up in its registry; the first missing one raises the registry's error."""
    for spec in checks:
        kind, sep, name = spec.partition(":")
        if not sep or not kind or not name:
            raise UsageError(f"--check expects KIND:NAME (e.g. backend:localfs), got '{spec}'")
        registry = manager.registry(kind)
        cls = registry.get(name)
        record = manager.records[registry.provider(name)]
        dist = f" ({record.distribution} {record.version})" if record.distribution else ""
        click.echo(f"{kind} {name}: {cls.__module__}.{cls.__qualname__} from plugin '{record.name}'{dist}")


_commands_added = False


def build_cli() -> click.Group:
    """Return the ``nydus`` group with every plugin's commands added."""
    global _commands_added
    if not _commands_added:
        _commands_added = True
        from . import core_commands  # noqa: F401 - registers the core's own commands

        get_manager().add_commands(cli)
    return cli


def main() -> None:
    """Entry point of the ``nydus`` command."""
    raise SystemExit(run_main(build_cli, prog_name="nydus"))
