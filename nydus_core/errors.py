"""The NydusError tree. Every error a user can see is one of these, with an exit code.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``; a traceback is shown
only with ``--debug``. Plugins map SDK exceptions (boto3, oss2, requests, ...) to these classes so
nothing foreign leaks out of them; where the core calls into a plugin, :class:`plugin_errors` turns
anything else a plugin raises (a bug, an unmapped library error) into one of these, on one line.
"""

from __future__ import annotations

from types import TracebackType

__all__ = [
    "AuthError",
    "BackendError",
    "BlobNotFoundError",
    "BuildError",
    "CacheError",
    "ConfigError",
    "DuplicatePluginError",
    "FormatError",
    "IntegrityError",
    "NydusError",
    "PermissionDeniedError",
    "PluginError",
    "PluginLoadError",
    "TransientBackendError",
    "UnknownPluginError",
    "UnsupportedFeatureError",
    "UnsupportedOperationError",
    "UsageError",
    "describe",
    "plugin_errors",
]


class NydusError(Exception):
    """Base of every error nydus-py reports to users."""

    exit_code = 1


class UsageError(NydusError):
    """A command was called wrongly (bad flag value, missing argument)."""

    exit_code = 2


class ConfigError(NydusError):
    """A config file or config value is invalid; the message names the file and the key."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ""
        if file:
            where += f"{file}: "
        if key:
            where += f"{key}: "
        super().__init__(where + message)


class PluginError(NydusError):
    """A plugin could not be loaded, is missing, or clashes with another one."""

    exit_code = 3


class UnknownPluginError(PluginError):
    """A name (in config, on the command line, or inside an image) that no installed plugin provides."""


class PluginLoadError(PluginError):
    """An installed plugin failed to import or to register (fatal only in strict mode)."""


class DuplicatePluginError(PluginError):
    """Two plugins provide the same name for one capability."""


class FormatError(NydusError):
    """A bootstrap or blob is malformed, truncated, or fails upstream's load-time checks."""

    exit_code = 4


class UnsupportedFeatureError(FormatError):
    """A valid image uses a feature nydus-py does not implement (zran, batch, encryption, tarfs...)."""


class IntegrityError(NydusError):
    """Data does not match its recorded digest (a corrupt chunk or blob)."""

    exit_code = 5


class BackendError(NydusError):
    """A storage backend failed; subclasses say which kind of failure it was."""

    exit_code = 6
    kind = "backend error"


class BlobNotFoundError(BackendError):
    """The backend has no blob (object, file) with that id."""

    kind = "not found"


class AuthError(BackendError):
    """The backend rejected our credentials (or we had none)."""

    kind = "authentication failed"


class PermissionDeniedError(BackendError):
    """The credentials are valid but not allowed to do this."""

    kind = "permission denied"


class TransientBackendError(BackendError):
    """A failure that may pass (timeouts, resets, 5xx) and was still failing after retries."""

    kind = "transient failure"


class UnsupportedOperationError(BackendError):
    """The backend cannot do this operation at all (e.g. writing to a read-only backend)."""

    kind = "unsupported operation"


class CacheError(NydusError):
    """The local cache could not be read or written."""

    exit_code = 7


class BuildError(NydusError):
    """An image could not be built from its source (bad tar member, missing hard-link target...)."""

    exit_code = 8


def describe(exc: BaseException, limit: int = 400) -> str:
    """Return ``Type: message`` on one line (multi-line messages joined, long ones cut)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class plugin_errors:  # lower case: used like contextlib.suppress
    """Context manager around a call into plugin code: what the plugin raises ends as one NydusError.

    ``with plugin_errors(BackendError, f"backend 's3' failed reading blob {b}"): data = backend.read(...)``

    - an exception that is not a NydusError (a plugin bug, an SDK error the plugin did not map)
      becomes ``error(f"{what}: {Type}: {message}")``, chained to the original (shown by ``--debug``);
    - a NydusError of class ``reword`` (when given) becomes ``error(f"{what}: {message}")``, so the
      message says where it happened;
    - any other NydusError, and BaseExceptions such as KeyboardInterrupt, pass unchanged.

    Cheap enough for the read path: one small object, no generator.
    """

    __slots__ = ("error", "reword", "what")

    def __init__(self, error: type[NydusError], what: str, *,
                 reword: type[NydusError] | None = None) -> None:
        self.error = error
        self.what = what
        self.reword = reword

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # returns None: never swallows (so type checkers know a ``return`` inside the block returns)
        if exc is None or not isinstance(exc, Exception):
            return
        if isinstance(exc, NydusError):
            if self.reword is not None and isinstance(exc, self.reword):
                raise self.error(f"{self.what}: {exc}") from None
            return
        raise self.error(f"{self.what}: {describe(exc)}") from exc
