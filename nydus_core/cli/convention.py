"""The convention every nydus command line follows, applied in one place (:func:`apply_convention`).

- ``-h`` and ``--help`` on every command and subcommand;
- ``--debug`` (tracebacks on errors) accepted on every command and subcommand, so that
  ``nydus cat IMAGE PATH --debug`` works as well as ``nydus --debug cat IMAGE PATH``;
  :func:`~nydus_core.cli.runner.run_main` reads it from the command line;
- ``--version`` on each top-level command and one example in its help (each tool's own code).

Exit codes come from the :class:`~nydus_core.errors.NydusError` tree (``exit_code`` of each class),
2 for usage errors, 70 for an internal error, 130 when interrupted; the README lists them.
"""

from __future__ import annotations

import click

__all__ = ["CONTEXT_SETTINGS", "DEBUG_HELP", "apply_convention"]

#: Context settings for a top-level command: ``-h`` as well as ``--help`` (subcommands inherit it).
CONTEXT_SETTINGS: dict[str, object] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEBUG_HELP = "Show tracebacks on errors."


def _has_option(command: click.Command, flag: str) -> bool:
    return any(isinstance(p, click.Option) and flag in (*p.opts, *p.secondary_opts) for p in command.params)


def apply_convention(command: click.Command) -> click.Command:
    """Give ``command`` and every subcommand ``-h/--help`` and ``--debug``; return ``command``.

    Idempotent. The added ``--debug`` is not passed to the command's function (it only makes
    :func:`~nydus_core.cli.runner.run_main` show tracebacks); a command that declares its own keeps it.
    """
    for key, value in CONTEXT_SETTINGS.items():
        command.context_settings.setdefault(key, value)
    todo = [command]
    while todo:
        cmd = todo.pop()
        if not _has_option(cmd, "--debug"):
            cmd.params.append(click.Option(["--debug"], is_flag=True, expose_value=False, help=DEBUG_HELP))
        if isinstance(cmd, click.Group):
            todo.extend(cmd.commands.values())
    return command
