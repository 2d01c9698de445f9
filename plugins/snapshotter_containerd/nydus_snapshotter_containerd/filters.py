"""containerd's filter syntax, as ``Walk``/``List`` receive it, for snapshot infos.

A filter is ``selector[,selector...]`` (all must hold); several filters in one request are
alternatives. A selector is ``field``, ``field==value``, ``field!=value`` or ``field~=regexp``,
where ``field`` is ``name``, ``parent``, ``kind`` or ``labels.KEY`` (``labels."a/b.c"`` quoted), and
a value may be bare or quoted with ``"`` or ``/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .metadata import InvalidArgumentError, Snapshot

Predicate = Callable[[Snapshot], bool]

_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|/((?:[^/\\]|\\.)*)/|(==|!=|~=|,|\.)|([^\s,.=!~"/]+))')


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InvalidArgumentError(f"invalid filter {text!r} at offset {pos}")
        if m.group(1) is not None:
            out.append(("str", bytes(m.group(1), "utf-8").decode("unicode_escape")))
        elif m.group(2) is not None:
            out.append(("str", m.group(2).replace("\\/", "/")))
        elif m.group(3) is not None:
            out.append(("op", m.group(3)))
        else:
            out.append(("word", m.group(4)))
        pos = m.end()
    return out


def _field(s: Snapshot, path: list[str]) -> str | None:
    head = path[0]
    if head == "name" and len(path) == 1:
        return s.name
    if head == "parent" and len(path) == 1:
        return s.parent
    if head == "kind" and len(path) == 1:
        return s.kind.name.lower()
    if head == "labels" and len(path) >= 2:
        return s.labels.get(".".join(path[1:]))
    return None


def parse_filter(text: str) -> Predicate:
    """Return a predicate for one filter string; InvalidArgumentError when it does not parse."""
    toks = _tokens(text)
    selectors: list[Predicate] = []
    i = 0
    while i < len(toks):
        path: list[str] = []
        while True:
            if i >= len(toks) or toks[i][0] not in ("word", "str"):
                raise InvalidArgumentError(f"invalid filter {text!r}: field name expected")
            path.append(toks[i][1])
            i += 1
            if i < len(toks) and toks[i] == ("op", "."):
                i += 1
                continue
            break
        op, value = "", ""
        if i < len(toks) and toks[i][0] == "op" and toks[i][1] in ("==", "!=", "~="):
            op = toks[i][1]
            i += 1
            parts = []
            while i < len(toks) and toks[i] != ("op", ","):
                parts.append(toks[i][1])
                i += 1
            value = "".join(parts)
        if i < len(toks):
            if toks[i] != ("op", ","):
                raise InvalidArgumentError(f"invalid filter {text!r}: ',' expected")
            i += 1
            if i == len(toks):
                raise InvalidArgumentError(f"invalid filter {text!r}: a selector must follow ','")
        selectors.append(_selector(path, op, value, text))
    return lambda s: all(p(s) for p in selectors)


def _selector(path: list[str], op: str, value: str, text: str) -> Predicate:
    if op == "~=":
        try:
            rx = re.compile(value)
        except re.error as exc:
            raise InvalidArgumentError(f"invalid filter {text!r}: {exc}") from None
        return lambda s: (v := _field(s, path)) is not None and rx.search(v) is not None
    if op == "==":
        return lambda s: _field(s, path) == value
    if op == "!=":
        return lambda s: _field(s, path) != value
    return lambda s: bool(_field(s, path))


def matcher(filters: Sequence[str]) -> Predicate:
    """A predicate true when any of ``filters`` holds (always true for none)."""
    preds = [parse_filter(f) for f in filters if f.strip()]
    if not preds:
        return lambda s: True
    return lambda s: any(p(s) for p in preds)
