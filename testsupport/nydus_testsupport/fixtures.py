"""Where the upstream Nydus fixtures are, and how to read their expected results.

The fixtures live outside the repository, in ``../shared/fixtures/upstream`` relative to the repo
root (``NYDUS_UPSTREAM_FIXTURES`` overrides the location). They are never copied into the repo; tests
skip with a reason when they are absent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_REASON = "upstream fixtures not found (expected ../shared/fixtures/upstream beside the repository)"


def repo_root() -> Path:
    """Return the repository root (the directory holding ``nydus_core``)."""
    return Path(__file__).resolve().parents[2]


def upstream_dir() -> Path | None:
    """Return the upstream fixtures directory, or None when it is absent."""
    override = os.environ.get("NYDUS_UPSTREAM_FIXTURES")
    candidate = Path(override) if override else repo_root().parent / "shared" / "fixtures" / "upstream"
    return candidate if candidate.is_dir() else None


def require_upstream() -> Path:
    """Return the upstream fixtures directory, or skip the calling pytest test with a clear reason."""
    d = upstream_dir()
    if d is None:
        import pytest

        pytest.skip(_REASON)
    return d


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a ``tree -J`` listing: path (absolute, ``/``-separated), kind and symlink target."""

    path: str
    kind: str  # "directory", "file" or "link"
    target: str | None = None


def parse_tree_result(path: str | os.PathLike[str]) -> tuple[list[TreeEntry], dict[str, str]]:
    """Parse an upstream ``.result`` file: a ``tree -J`` JSON listing followed by ``md5sum`` lines.

    Returns the entries (root excluded) and a map from absolute path to md5 hex digest.
    """
    text = Path(path).read_text()
    listing, end = json.JSONDecoder().raw_decode(text)
    entries: list[TreeEntry] = []

    def visit(node: dict[str, Any], prefix: str) -> None:
        for child in node.get("contents", []):
            p = f"{prefix}/{child['name']}"
            entries.append(TreeEntry(p, child["type"], child.get("target")))
            if child["type"] == "directory":
                visit(child, p)

    for top in listing:
        if top.get("type") == "directory":
            visit(top, "")
    md5s: dict[str, str] = {}
    for line in text[end:].splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            md5s[parts[1].strip()] = parts[0]
    return entries, md5s
