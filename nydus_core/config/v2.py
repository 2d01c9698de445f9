"""Reader of upstream's v2 config (``version = 2``; JSON or TOML, same keys)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .components import (
    UPSTREAM_BACKENDS,
    UPSTREAM_CACHE_TABLES,
    build_backend,
    build_cache,
    cache_class,
    known_names,
    refuse_external_backends,
)
from .fields import ParseContext, Section
from .model import DEFAULT_AMPLIFY_IO, MAX_AMPLIFY_IO, MODES, BackendConfig, CacheConfig, NydusConfig
from .prefetch import V2_NAMES, merge_v2, read_prefetch

OVERLAY_MESSAGE = (
    "the native overlay (nydusd --writable) is not supported: nydus-py mounts are read-only; "
    "remove the [overlay] section or leave its values empty"
)


def read_v2(data: Mapping[str, Any], ctx: ParseContext, env: Mapping[str, str] | None) -> NydusConfig:
    """Build the model from a decoded v2 config."""
    top = Section(data, "", ctx)
    top.int("version", 2)
    config_id = top.str("id", "")
    backend = _read_backend(top.table("backend"), ctx, env) if top.present("backend") else None
    refuse_external_backends(top.array("external_backends"), key="external_backends", ctx=ctx)
    cache, cache_prefetch, cache_validate_without_cache = _read_cache(top.table("cache"), ctx)
    _refuse_overlay(top.table("overlay"))

    rafs = top.table("rafs")
    config = NydusConfig(
        backend=backend,
        cache=cache,
        id=config_id,
        mode=rafs.str("mode", "direct", choices=MODES),
        amplify_io=rafs.int("batch_size", DEFAULT_AMPLIFY_IO, maximum=MAX_AMPLIFY_IO, hex_bounds=True),
        digest_validate=rafs.bool("validate", False) or cache_validate_without_cache,
        enable_xattr=rafs.bool("enable_xattr", False),
        iostats_files=rafs.bool("iostats_files", False),
        access_pattern=rafs.bool("access_pattern", False),
        latest_read_files=rafs.bool("latest_read_files", False),
        fs_prefetch=merge_v2(read_prefetch(rafs.table("prefetch"), V2_NAMES), cache_prefetch),
        source=ctx.file or "<config>",
        version=2,
    )
    rafs.finish()
    top.finish()
    return config


def _read_backend(section: Section, ctx: ParseContext, env: Mapping[str, str] | None) -> BackendConfig:
    type_name = section.str("type", "")
    options = section.mapping(type_name) if type_name else {}
    # Tables of the other backends are ignored (upstream's example lists them all side by side).
    section.ignore(*UPSTREAM_BACKENDS, *known_names("backend"))
    section.finish()
    return build_backend(
        type_name, options, type_key=section.key("type"), options_key=section.key(type_name), ctx=ctx, env=env
    )


def _read_cache(section: Section, ctx: ParseContext) -> tuple[CacheConfig | None, Any, bool]:
    """Return the cache model, the ``[cache.prefetch]`` setting, and whether ``validate`` was set
    without a cache."""
    type_name = section.str("type", "")
    compressed = section.bool("compressed", False)
    validate = section.bool("validate", False)
    prefetch = read_prefetch(section.table("prefetch"), V2_NAMES)
    cls = cache_class(type_name, type_key=section.key("type"), ctx=ctx)
    cache_names = known_names("cache")
    section.ignore(*UPSTREAM_CACHE_TABLES, *cache_names)
    if cls is None:
        section.finish()
        return None, prefetch, validate
    table = _options_table(section, type_name, cls)
    options = section.mapping(table)
    section.finish()
    cache = build_cache(
        cls, options, compressed=compressed, validate=validate,
        options_key=section.key(table), compressed_key=section.key("compressed"), ctx=ctx,
    )
    return cache, prefetch, False


def _options_table(section: Section, type_name: str, cls: type[Any]) -> str:
    """Name the table that holds a cache's options: ``filecache`` for the blob cache (upstream),
    else the type name; any of the plugin's names is accepted, but only one may be given."""
    names: list[str] = [type_name, cls.name, *getattr(cls, "aliases", ())]
    if "filecache" in names:
        names.insert(0, "filecache")
    candidates = list(dict.fromkeys(names))
    given = [n for n in candidates if n in section.data]
    if len(given) > 1:
        tables = " and ".join(f"[{section.key(n)}]" for n in given)
        raise section.error(None, f"{tables} both configure the '{cls.name}' cache; keep one")
    return given[0] if given else candidates[0]


def _refuse_overlay(section: Section) -> None:
    upper = section.str("upper_dir", "")
    work = section.str("work_dir", "")
    section.finish()
    if upper or work:
        raise section.error("upper_dir" if upper else "work_dir", OVERLAY_MESSAGE)
