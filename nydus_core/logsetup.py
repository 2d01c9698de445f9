"""Logging set-up for every nydus command: upstream's level names and one root handler.

Upstream's tools take ``--log-level trace|debug|info|warn|error`` (``trace`` is Python's DEBUG,
``warning`` is accepted beside ``warn``) and ``--log-file FILE`` (``.log`` is appended to a name
without an extension); nydusd also rotates its file at ``--log-rotation-size`` MB. Every command
(``nydus-image``, ``nydusd``, ``nydusify``, ``containerd-nydus-grpc``) and nydusd's
``PUT /api/v1/daemon`` use the table and the function here.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from types import MappingProxyType

from .errors import UsageError
from .redact import RedactingFilter

__all__ = ["DEFAULT_FORMAT", "LEVELS", "LEVEL_NAMES", "level_of", "setup_logging"]

#: Upstream's level names, in increasing severity (what ``--log-level`` offers).
LEVEL_NAMES: tuple[str, ...] = ("trace", "debug", "info", "warn", "error")

#: Level name (lower case) -> ``logging`` level; ``warning`` is accepted as an alias of ``warn``.
LEVELS: Mapping[str, int] = MappingProxyType({
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
})

#: The record format of the tools' logs (nydusd passes its upstream-like ``[time] LEVEL message``).
DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_BACKUPS = 5


def level_of(name: str) -> int:
    """Return the ``logging`` level of an upstream level name (any case); UsageError otherwise."""
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown log level '{name}' ({', '.join(LEVEL_NAMES)})") from None


def _open_private(handler: logging.FileHandler) -> io.TextIOWrapper:
    """Open the handler's file for appending, created 0600 whatever the umask (logs name paths,
    images and hosts: not for other local users)."""
    fd = os.open(handler.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    return open(fd, "a", encoding=handler.encoding, errors=handler.errors)


class _PrivateFileHandler(logging.FileHandler):
    def _open(self) -> io.TextIOWrapper:
        return _open_private(self)


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    def _open(self) -> io.TextIOWrapper:
        return _open_private(self)


def setup_logging(
    level: str = "info",
    log_file: str | None = None,
    *,
    rotation_mb: int = 0,
    fmt: str = DEFAULT_FORMAT,
) -> None:
    """Send the root logger's records at ``level`` or above to ``log_file`` (stderr when None).

    ``.log`` is appended to a file name without an extension; with ``rotation_mb`` the file is
    rotated at that many MiB, keeping five old files. A bad level or an unwritable file raises
    UsageError (one line)."""
    numeric = level_of(level)
    handler: logging.Handler
    if log_file:
        if not os.path.splitext(log_file)[1]:
            log_file += ".log"
        try:
            if rotation_mb:
                handler = _PrivateRotatingFileHandler(log_file, maxBytes=rotation_mb << 20,
                                                      backupCount=_BACKUPS)
            else:
                handler = _PrivateFileHandler(log_file)
        except OSError as exc:
            raise UsageError(f"--log-file {log_file}: {exc.strerror or exc}") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
