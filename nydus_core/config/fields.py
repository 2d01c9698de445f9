"""Typed reading of one table of a config file, with errors that name the file and the key path.

:class:`Section` is used by the config layer for nydusd's own sections and is meant for plugins too:
a backend's ``validate_config`` can read its options with ``Section(config)`` and get the same
messages (``expected a boolean, got "yes"``); keys it raises are relative (``proxy.url``) and the
config layer prefixes the section's path (``device.backend.config.proxy.url``).
"""

from __future__ import annotations

import builtins
import difflib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import ConfigError

__all__ = [
    "MAX_IO_SIZE",
    "REQUIRED",
    "U32_MAX",
    "ParseContext",
    "Section",
    "describe",
    "join_key",
    "suggest",
]

log = logging.getLogger("nydus_core.config")

#: Marks an option that has no default: leaving it out is an error.
REQUIRED: Final = object()

U32_MAX = 0xFFFF_FFFF
#: Upper bound upstream uses for sizes (amplify_io, merging/batch sizes): 256 MiB.
MAX_IO_SIZE = 0x1000_0000


def describe(value: Any) -> str:
    """Render a config value the way users wrote it (JSON spelling) for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def join_key(*parts: str | None) -> str:
    """Join key-path parts with dots, skipping empty ones."""
    return ".".join(p for p in parts if p)


def suggest(name: str, known: Iterable[str]) -> str | None:
    """Return the known key ``name`` is most likely a typo of, if any."""
    close = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.75)
    return close[0] if close else None


@dataclass
class ParseContext:
    """Where values come from (the file) and what was noticed while reading them."""

    file: str | None = None
    strict: bool = False
    warnings: list[str] = field(default_factory=list)

    def error(self, key: str | None, message: str) -> ConfigError:
        """Return a ConfigError naming this file and ``key``."""
        return ConfigError(message, file=self.file, key=key or None)

    def warn(self, key: str | None, message: str) -> None:
        """Record and log a warning about ``key``."""
        where = "".join(f"{p}: " for p in (self.file, key) if p)
        text = where + message
        self.warnings.append(text)
        log.warning("%s", text)

    def unknown_key(self, key: str, hint: str | None) -> None:
        """Report a key nobody reads: a warning (upstream ignores it), an error when strict."""
        message = "unknown key, ignored" + (f" (did you mean '{hint}'?)" if hint else "")
        if self.strict:
            raise self.error(key, "unknown key" + (f" (did you mean '{hint}'?)" if hint else ""))
        self.warn(key, message)


class Section:
    """A typed view of one JSON object / TOML table at key path ``path``.

    Every getter records its key as known, so :meth:`finish` can report the keys nobody read
    (with a "did you mean" for likely typos). A missing key gives the default; a present key of the
    wrong type, out of range or not among the choices raises :class:`ConfigError` naming the key.
    ``null`` counts as missing only for :meth:`optional_str` and :meth:`table`.
    """

    def __init__(
        self, data: Mapping[str, Any] | None, path: str = "", ctx: ParseContext | None = None
    ) -> None:
        self.data: Mapping[str, Any] = data if data is not None else {}
        self.path = path
        self.ctx = ctx if ctx is not None else ParseContext()
        self.known: set[str] = set()

    # -- helpers -----------------------------------------------------------------------------

    def key(self, name: str) -> str:
        """Return the full key path of ``name`` in this section."""
        return join_key(self.path, name)

    def error(self, name: str | None, message: str) -> ConfigError:
        """Return a ConfigError about key ``name`` of this section (or the section itself)."""
        return self.ctx.error(self.key(name) if name else self.path, message)

    def present(self, name: str) -> bool:
        """Return whether ``name`` is given (``null`` counts as given)."""
        self.known.add(name)
        return name in self.data

    def ignore(self, *names: str) -> None:
        """Mark keys as known without reading them (tables read elsewhere, other backends' tables)."""
        self.known.update(names)

    def _get(self, name: str, default: Any) -> Any:
        self.known.add(name)
        if name in self.data:
            return self.data[name]
        if default is REQUIRED:
            raise self.error(name, "missing (this key is required)")
        return default

    def _type_error(self, name: str, expected: str, value: Any) -> ConfigError:
        return self.error(name, f"expected {expected}, got {describe(value)}")

    # -- scalars -----------------------------------------------------------------------------

    def bool(self, name: str, default: Any = False) -> builtins.bool:
        """Read a boolean (``true``/``false`` only: no strings, no numbers)."""
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._type_error(name, "a boolean", value)
        return value

    def int(
        self,
        name: str,
        default: Any = 0,
        *,
        minimum: builtins.int | None = 0,
        maximum: builtins.int | None = None,
        hex_bounds: builtins.bool = False,
    ) -> builtins.int:
        """Read an integer within ``minimum..maximum`` (both inclusive; None means unbounded)."""
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._type_error(name, "an integer", value)
        self.check_range(name, value, minimum, maximum, hex_bounds=hex_bounds)
        return value

    def check_range(
        self,
        name: str,
        value: builtins.int,
        minimum: builtins.int | None,
        maximum: builtins.int | None,
        *,
        hex_bounds: builtins.bool = False,
    ) -> None:
        """Raise a ConfigError unless ``minimum <= value <= maximum``."""
        if (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
            return

        def fmt(bound: builtins.int | None) -> str:
            if bound is None:
                return ""
            return f"{bound} ({bound:#x})" if hex_bounds and bound > 9 else str(bound)

        raise self.error(name, f"{value} is out of range (allowed: {fmt(minimum)}..{fmt(maximum)})")

    def str(
        self, name: builtins.str, default: Any = "", *, choices: Iterable[builtins.str] | None = None
    ) -> builtins.str:
        """Read a string; with ``choices``, one of them."""
        value = self._get(name, default)
        if not isinstance(value, str):
            raise self._type_error(name, "a string", value)
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                listing = ", ".join(json.dumps(c) for c in allowed)
                raise self.error(name, f"{describe(value)} is not allowed (allowed: {listing})")
        return value

    def optional_str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str | None:
        """Read a string that may be left out or ``null``."""
        value = self._get(name, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._type_error(name, "a string", value)
        return value

    def str_list(self, name: builtins.str, default: Iterable[builtins.str] = ()) -> list[builtins.str]:
        """Read an array of strings."""
        value = self._get(name, list(default))
        if not isinstance(value, list | tuple):
            raise self._type_error(name, "an array of strings", value)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{i}]", f"expected a string, got {describe(item)}")
        return list(value)

    # -- containers --------------------------------------------------------------------------

    def table(self, name: builtins.str) -> Section:
        """Return the sub-section ``name`` (empty when missing or ``null``)."""
        return Section(self.mapping(name), self.key(name), self.ctx)

    def mapping(self, name: builtins.str) -> Mapping[builtins.str, Any]:
        """Return the raw object at ``name`` (``{}`` when missing or ``null``), checking its type."""
        value = self._get(name, None)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self._type_error(name, "an object (a TOML table)", value)
        return value

    def array(self, name: builtins.str) -> list[Any]:
        """Return the raw array at ``name`` (``[]`` when missing or ``null``), checking its type."""
        value = self._get(name, None)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise self._type_error(name, "an array", value)
        return list(value)

    # -- end ---------------------------------------------------------------------------------

    def unknown(self) -> list[builtins.str]:
        """Return the keys present in this section that no getter asked for."""
        return [k for k in self.data if k not in self.known]

    def finish(self) -> None:
        """Report every unknown key (warning, or error in strict mode), with typo suggestions."""
        for name in self.unknown():
            self.ctx.unknown_key(self.key(name), suggest(name, self.known))
