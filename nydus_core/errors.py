"""The NydusError tree. Every error a user can see is one of these, with an exit code.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``; a traceback is shown
only with ``--debug``. Plugins map SDK exceptions (boto3, oss2, requests, ...) to these classes so
nothing foreign leaks out of them.
"""

from __future__ import annotations

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
