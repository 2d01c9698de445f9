"""Entry points: read a config file or text, detect its format and version, build the model."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..errors import ConfigError
from .fields import ParseContext, describe
from .model import NydusConfig
from .v1 import read_v1
from .v2 import read_v2

#: Upstream refuses config files larger than this.
MAX_CONFIG_SIZE = 0x100000

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None, strict: bool = False
) -> NydusConfig:
    """Read and validate the nydusd config file at ``path`` (v1 JSON, v2 JSON or v2 TOML).

    ``.json`` files are parsed as JSON, ``.toml`` files as TOML, anything else by content (JSON
    when it starts with ``{``). ``env`` replaces ``os.environ`` (for ``IMAGE_PULL_AUTH``);
    ``strict`` makes unknown keys errors instead of warnings.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            raw = fh.read(MAX_CONFIG_SIZE + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", file=name) from None
    if len(raw) > MAX_CONFIG_SIZE:
        raise ConfigError(f"config file is larger than {MAX_CONFIG_SIZE} bytes", file=name)
    ext = os.path.splitext(name)[1].lower()
    syntax = {".json": "json", ".toml": "toml"}.get(ext)
    data = decode_text(raw, source=name, syntax=syntax)
    return _build(data, source=name, env=env, strict=strict)


def parse_config(
    obj: Mapping[str, Any] | str | bytes,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    strict: bool = False,
) -> NydusConfig:
    """Validate a config given as decoded data or as JSON/TOML text; ``source`` names it in errors."""
    if isinstance(obj, str | bytes):
        data = decode_text(obj, source=source)
    elif isinstance(obj, Mapping):
        data = obj
    else:
        raise TypeError(f"parse_config() takes a mapping, str or bytes, not {type(obj).__name__}")
    return _build(data, source=source, env=env, strict=strict)


def decode_text(text: str | bytes, *, source: str, syntax: str | None = None) -> Mapping[str, Any]:
    """Decode JSON or TOML text into a mapping; errors give the line and column.

    ``syntax`` is ``"json"``, ``"toml"`` or None to decide by content.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text (bad byte at offset {exc.start})", file=source) from None
    text = text.removeprefix("\ufeff")
    if syntax is None:
        syntax = "json" if text.lstrip().startswith("{") else "toml"
    _check_nesting(text, source)
    if syntax == "json":
        try:
            data = json.loads(text, parse_int=_bounded_int(source), parse_constant=_no_constant(source))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                              file=source) from None
        except (RecursionError, ValueError) as exc:  # beyond the bounds checked above: still one line
            raise ConfigError(f"invalid JSON: {_describe_exc(exc)}", file=source) from None
        if not isinstance(data, dict):
            raise ConfigError(f"expected a JSON object at the top level, got {describe(data)}", file=source)
        return data
    try:
        return tomllib.loads(text)
    except (RecursionError, ValueError) as exc:
        if isinstance(exc, tomllib.TOMLDecodeError):
            raise _toml_error(exc, text, source) from None
        # an integer beyond Python's digit limit, nesting beyond the interpreter's
        raise ConfigError(f"invalid TOML: {_describe_exc(exc)}", file=source) from None


def _toml_error(exc: tomllib.TOMLDecodeError, text: str, source: str) -> ConfigError:
    message = str(exc)
    pos = _TOML_POS.search(message)
    if pos:
        line, col = int(pos.group(1)), int(pos.group(2))
        message = message[: pos.start()]
    else:
        lines = text.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
        message = _TOML_END.sub("", message)
    return ConfigError(f"invalid TOML at line {line}, column {col}: {message}", file=source)


#: deepest nesting of arrays/objects a config may have (real configs use fewer than 8 levels)
MAX_CONFIG_DEPTH = 32
#: longest integer literal (digits) read from a config; no config value needs more than 20
MAX_INT_DIGITS = 40
_STRINGS = re.compile(r'"(?:[^"\\\n]|\\.)*"' + r"|'[^'\n]*'")
_BRACKETS = re.compile(r"[\[\]{}]")


def _check_nesting(text: str, source: str) -> None:
    """ConfigError when arrays/objects nest deeper than :data:`MAX_CONFIG_DEPTH` (strings skipped)."""
    depth = 0
    for m in _BRACKETS.finditer(_STRINGS.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"arrays/objects nest deeper than {MAX_CONFIG_DEPTH} levels", file=source)


def _bounded_int(source: str) -> Callable[[str], int]:
    def parse(literal: str) -> int:
        digits = len(literal.lstrip("-"))
        if digits > MAX_INT_DIGITS:
            raise ConfigError(f"an integer of {digits} digits is out of range for every config value",
                              file=source)
        return int(literal)

    return parse


def _no_constant(source: str) -> Callable[[str], Any]:
    def parse(name: str) -> Any:
        raise ConfigError(f"{name} is not a valid JSON number", file=source)

    return parse


def _describe_exc(exc: BaseException) -> str:
    """One line for a decoder's RecursionError/ValueError (never the whole message of a huge input)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    huge = re.search(r"value has (\d+) digits", str(exc))
    if huge:
        return f"an integer of {huge.group(1)} digits is out of range for every config value"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _build(
    data: Mapping[str, Any], *, source: str, env: Mapping[str, str] | None, strict: bool
) -> NydusConfig:
    ctx = ParseContext(file=source, strict=strict)
    version = data.get("version")
    if version is None or (version == 1 and type(version) is int):
        _check_layout(data, ctx, version=1)
        config = read_v1(data, ctx, env)
    elif version == 2 and type(version) is int:
        _check_layout(data, ctx, version=2)
        config = read_v2(data, ctx, env)
    else:
        raise ctx.error(
            "version",
            f"unsupported config version {describe(version)} (allowed: 2 for the v2 format; "
            "leave it out for the v1 format)",
        )
    return _with_warnings(config, ctx)


#: Top-level sections that exist only in the v2 layout.
_V2_SECTIONS = ("backend", "cache", "rafs", "overlay")


def _check_layout(data: Mapping[str, Any], ctx: ParseContext, *, version: int) -> None:
    """Refuse a config whose sections belong to the other layout (a forgotten or wrong ``version``),
    instead of ignoring them all and running without a backend."""
    v2_sections = [name for name in _V2_SECTIONS if name in data]
    if version == 1 and v2_sections and "device" not in data:
        listed = ", ".join(f"'{name}'" for name in v2_sections)
        raise ctx.error(
            "version",
            f"missing: the config has v2 sections ({listed}) but no 'version = 2'; add it, "
            "or use the v1 layout ('device', 'fs_prefetch', ...)",
        )
    if version == 2 and "device" in data and "backend" not in data:
        raise ctx.error(
            "device",
            "this is a v1 section, but the config says version = 2; use [backend], [cache] and [rafs] "
            "or remove 'version'",
        )


def _with_warnings(config: NydusConfig, ctx: ParseContext) -> NydusConfig:
    return replace(config, warnings=tuple(ctx.warnings))
