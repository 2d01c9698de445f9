"""Backend and cache sections: find the plugin for a type name and let it validate its options.

Plugins validate their own options (``validate_config`` classmethods raising ``ConfigError(key=...)``
with keys relative to their options); here the key gets the section's path in front and the file
name, unknown types get the registry's install hint, and options a plugin dropped from its result
are reported as unknown keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .. import plugins
from ..errors import ConfigError, PluginError, UnknownPluginError
from .fields import ParseContext, join_key, suggest
from .frozen import freeze, thaw
from .model import BackendConfig, CacheConfig

#: Environment variable that overrides the registry backend's ``auth`` (base64 of ``user:pass``).
AUTH_ENV = "IMAGE_PULL_AUTH"

#: Cache types meaning "no cache".
NO_CACHE_TYPES = frozenset({"", "dummycache"})

FSCACHE_MESSAGE = (
    "cache type 'fscache' is not supported: it needs the kernel's cachefiles on-demand mode "
    "(EROFS over fscache), which this kernel lacks; use 'blobcache' (alias 'filecache') instead"
)

#: Backend names upstream knows, so their v2 tables are not reported as unknown keys.
UPSTREAM_BACKENDS = ("localfs", "registry", "oss", "s3", "localdisk", "http-proxy")
#: Cache option tables upstream knows in v2 (``[cache.filecache]``, ``[cache.fscache]``).
UPSTREAM_CACHE_TABLES = ("filecache", "fscache")


class UnknownConfigPluginError(ConfigError, UnknownPluginError):
    """A config names a backend or cache type no installed plugin provides.

    Both a :class:`ConfigError` (it names the file and key) and an :class:`UnknownPluginError`.
    """


def _bare_message(exc: ConfigError) -> str:
    """Return a ConfigError's message without the ``file: key: `` prefix it was built with."""
    text = str(exc.args[0]) if exc.args else ""
    prefix = "".join(f"{p}: " for p in (exc.file, exc.key) if p)
    return text[len(prefix):] if prefix and text.startswith(prefix) else text


def lookup(kind: str, name: str, *, key: str, ctx: ParseContext) -> type[Any]:
    """Return the plugin class registered as ``name`` or raise an error naming the file and key."""
    try:
        return plugins.registry(kind).get(name)
    except UnknownPluginError as exc:
        raise UnknownConfigPluginError(str(exc), file=ctx.file, key=key) from None


def known_names(kind: str) -> list[str]:
    """Return every registered name (aliases included) of one plugin kind."""
    return plugins.registry(kind).names()


def validate_options(cls: type[Any], kind: str, options: Mapping[str, Any], *, key: str,
                     ctx: ParseContext) -> dict[str, Any]:
    """Run ``cls.validate_config`` on a copy of ``options``; prefix error keys with ``key``."""
    try:
        result = cls.validate_config(thaw(options))
    except ConfigError as exc:
        message = _bare_message(exc)
        if exc.file and exc.file != ctx.file:
            message = f"{exc.file}: {message}"
        raise ctx.error(join_key(key, exc.key), message) from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise ctx.error(key, f"invalid options for {kind} '{cls.name}': {exc}") from exc
    if not isinstance(result, Mapping):
        raise PluginError(
            f"{cls.__module__}.{cls.__qualname__}.validate_config returned "
            f"{type(result).__name__}, not a mapping (a bug in that plugin)"
        )
    report_dropped(options, result, key=key, ctx=ctx)
    return dict(result)


def report_dropped(given: Mapping[str, Any], kept: Mapping[str, Any], *, key: str, ctx: ParseContext) -> None:
    """Report option keys a plugin left out of its validated result: it does not know them."""
    for name, value in given.items():
        if name not in kept:
            ctx.unknown_key(join_key(key, name), suggest(name, kept))
        elif isinstance(value, Mapping) and isinstance(kept[name], Mapping):
            report_dropped(value, kept[name], key=join_key(key, name), ctx=ctx)


def build_backend(type_name: str, options: Mapping[str, Any], *, type_key: str, options_key: str,
                  ctx: ParseContext, env: Mapping[str, str] | None) -> BackendConfig:
    """Resolve and validate a backend section.

    ``IMAGE_PULL_AUTH`` (when set and non-empty) replaces the ``registry`` backend's ``auth`` before
    the plugin sees the options, as upstream's nydusd does.
    """
    if not type_name:
        installed = ", ".join(known_names("backend")) or "none"
        raise ctx.error(type_key, f"missing backend type (installed backends: {installed})")
    cls = lookup("backend", type_name, key=type_key, ctx=ctx)
    opts = thaw(options)
    auth = (os.environ if env is None else env).get(AUTH_ENV)
    if cls.name == "registry" and auth:
        opts["auth"] = auth
    validated = validate_options(cls, "backend", opts, key=options_key, ctx=ctx)
    return BackendConfig(type=cls.name, config=freeze(validated))


def cache_class(type_name: str, *, type_key: str, ctx: ParseContext) -> type[Any] | None:
    """Return the cache plugin class for ``type_name``; None for "no cache"; refuse ``fscache``."""
    if type_name in NO_CACHE_TYPES:
        return None
    if type_name == "fscache":
        raise ctx.error(type_key, FSCACHE_MESSAGE)
    return lookup("cache", type_name, key=type_key, ctx=ctx)


def build_cache(cls: type[Any], options: Mapping[str, Any], *, compressed: bool, validate: bool,
                options_key: str, compressed_key: str, ctx: ParseContext) -> CacheConfig:
    """Validate a cache section's options with its plugin and build the model."""
    validated = validate_options(cls, "cache", options, key=options_key, ctx=ctx)
    if compressed:
        ctx.warn(compressed_key, "ignored: the cache keeps uncompressed chunks (upstream no longer uses it)")
    return CacheConfig(type=cls.name, config=freeze(validated), compressed=compressed, validate=validate)


def refuse_external_backends(entries: list[Any], *, key: str, ctx: ParseContext) -> None:
    """Check the shape of ``external_backends`` and refuse it unless it is empty.

    External backends serve blobs built with ``nydus-image create --external-blob``, which nydus-py
    does not read.
    """
    for i, entry in enumerate(entries):
        item = f"{key}[{i}]"
        if not isinstance(entry, Mapping):
            raise ctx.error(item, "expected an object with 'type', 'patch' and 'config'")
        if not isinstance(entry.get("type", ""), str):
            raise ctx.error(join_key(item, "type"), "expected a string")
    if entries:
        raise ctx.error(
            key,
            f"{len(entries)} external backend(s) given, but external backends (for images built with "
            "--external-blob) are not supported by nydus-py; remove them or leave the list empty",
        )
