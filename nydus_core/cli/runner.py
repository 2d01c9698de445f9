"""Run a click command the way every nydus tool does: one-line errors, tracebacks only with --debug."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence

import click

from ..errors import NydusError, describe
from ..redact import redact
from .convention import apply_convention

__all__ = ["INTERNAL_ERROR_EXIT", "debug_requested", "run_main"]

INTERNAL_ERROR_EXIT = 70


def debug_requested(argv: Sequence[str]) -> bool:
    """Return whether ``--debug`` is on the command line or ``NYDUS_DEBUG`` is set."""
    return "--debug" in argv or os.environ.get("NYDUS_DEBUG", "") not in ("", "0")


def run_main(
    command: click.Command | Callable[[], click.Command],
    argv: Sequence[str] | None = None,
    prog_name: str | None = None,
) -> int:
    """Invoke ``command`` (or the command a factory builds) and turn every failure into one line
    on stderr and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(args)
    try:
        if not isinstance(command, click.Command):
            command = command()
        apply_convention(command)
        rv = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except NydusError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {redact(str(exc))}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 141
    except Exception as exc:  # a bug: still one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(f"error: internal error: {redact(describe(exc))} (run with --debug for details)", err=True)
        return INTERNAL_ERROR_EXIT
    return rv if isinstance(rv, int) else 0
