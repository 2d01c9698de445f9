"""nydusd config: upstream's v1 JSON and v2 JSON/TOML, parsed into one validated, frozen model.

>>> cfg = load_config("/etc/nydus/nydusd.json")       # doctest: +SKIP
>>> backend = cfg.require_backend().create()          # doctest: +SKIP

Backend and cache options are validated by the plugin that owns them (``validate_config``); every
error is a :class:`~nydus_core.errors.ConfigError` naming the file and the key path. Keys, defaults
and our differences from upstream: ``docs/config.md``.
"""

from __future__ import annotations

from .components import AUTH_ENV, UnknownConfigPluginError
from .fields import REQUIRED, ParseContext, Section
from .frozen import FrozenMap, freeze, thaw
from .model import (
    DEFAULT_AMPLIFY_IO,
    MODES,
    BackendConfig,
    CacheConfig,
    NydusConfig,
    PrefetchConfig,
)
from .parse import MAX_CONFIG_SIZE, decode_text, load_config, parse_config

__all__ = [
    "AUTH_ENV",
    "DEFAULT_AMPLIFY_IO",
    "MAX_CONFIG_SIZE",
    "MODES",
    "REQUIRED",
    "BackendConfig",
    "CacheConfig",
    "FrozenMap",
    "NydusConfig",
    "ParseContext",
    "PrefetchConfig",
    "Section",
    "UnknownConfigPluginError",
    "decode_text",
    "freeze",
    "load_config",
    "parse_config",
    "thaw",
]
