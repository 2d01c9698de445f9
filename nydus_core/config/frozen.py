"""Immutable copies of decoded JSON/TOML values, so a parsed config can be shared across threads."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, overload


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable mapping (the frozen form of a JSON object / TOML table).

    It equals a plain mapping with the same content, arrays given as lists or tuples alike.
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(data or {})
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap):
            return self._data == other._data
        if isinstance(other, Mapping):  # a plain dict: lists and tuples compare alike
            return thaw(self) == thaw(other)
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def freeze(value: Any) -> Any:
    """Return ``value`` with every mapping turned into a :class:`FrozenMap` and every list into a tuple."""
    if isinstance(value, Mapping):
        return FrozenMap({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


@overload
def thaw(value: Mapping[str, Any]) -> dict[str, Any]: ...
@overload
def thaw(value: Any) -> Any: ...
def thaw(value: Any) -> Any:
    """Return a plain, mutable, JSON-ready deep copy of a (possibly frozen) value."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value
