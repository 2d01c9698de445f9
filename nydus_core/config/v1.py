"""Reader of upstream's v1 JSON config (the ``RafsConfig`` shape)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .components import build_backend, build_cache, cache_class, refuse_external_backends
from .fields import ParseContext, Section
from .model import DEFAULT_AMPLIFY_IO, MAX_AMPLIFY_IO, MODES, BackendConfig, CacheConfig, NydusConfig
from .prefetch import V1_NAMES, read_prefetch


def read_v1(data: Mapping[str, Any], ctx: ParseContext, env: Mapping[str, str] | None) -> NydusConfig:
    """Build the model from a decoded v1 config."""
    top = Section(data, "", ctx)
    top.ignore("version")  # an explicit "version": 1
    device = top.table("device")
    config_id = device.str("id", "")
    backend = _read_backend(device, ctx, env) if device.present("backend") else None
    refuse_external_backends(device.array("external_backends"), key=device.key("external_backends"), ctx=ctx)
    cache, cache_validate_without_cache = _read_cache(device, ctx)
    device.finish()

    config = NydusConfig(
        backend=backend,
        cache=cache,
        id=config_id,
        mode=top.str("mode", "direct", choices=MODES),
        digest_validate=top.bool("digest_validate", False) or cache_validate_without_cache,
        iostats_files=top.bool("iostats_files", False),
        enable_xattr=top.bool("enable_xattr", False),
        access_pattern=top.bool("access_pattern", False),
        latest_read_files=top.bool("latest_read_files", False),
        amplify_io=top.int("amplify_io", DEFAULT_AMPLIFY_IO, maximum=MAX_AMPLIFY_IO, hex_bounds=True),
        fs_prefetch=read_prefetch(top.table("fs_prefetch"), V1_NAMES),
        source=ctx.file or "<config>",
        version=1,
    )
    top.finish()
    return config


def _read_backend(device: Section, ctx: ParseContext, env: Mapping[str, str] | None) -> BackendConfig:
    section = device.table("backend")
    type_name = section.str("type", "")
    options = section.mapping("config")
    section.finish()
    return build_backend(
        type_name, options, type_key=section.key("type"), options_key=section.key("config"), ctx=ctx, env=env
    )


def _read_cache(device: Section, ctx: ParseContext) -> tuple[CacheConfig | None, bool]:
    """Return the cache model and whether ``validate`` was set on a no-cache section."""
    section = device.table("cache")
    type_name = section.str("type", "")
    compressed = section.bool("compressed", False)
    validate = section.bool("validate", False)
    options = section.mapping("config")
    section.finish()
    cls = cache_class(type_name, type_key=section.key("type"), ctx=ctx)
    if cls is None:
        if options:
            ctx.warn(section.key("config"), f"ignored: no cache is configured (type {type_name!r})")
        return None, validate
    cache = build_cache(
        cls, options, compressed=compressed, validate=validate,
        options_key=section.key("config"), compressed_key=section.key("compressed"), ctx=ctx,
    )
    return cache, False
