"""Command-line image arguments: an existing file is a bootstrap, anything else an image reference
that a plugin resolves (``nydus_resolve_image``; nydus-converter-oci handles registry references).

An argument that does not exist but is written as a path -- it starts with ``/``, ``./`` or ``../``,
or ends in ``.boot`` or ``.bootstrap`` -- is "no such file": it is never sent to a plugin, so a
mistyped local path never becomes a network lookup (``org/app`` stays a reference, ``:latest``
implied)."""

from __future__ import annotations

import os
from typing import Any, cast

from .errors import DuplicatePluginError, UsageError, plugin_errors

__all__ = ["looks_like_path", "resolve_image_argument"]

_PATH_PREFIXES = ("/", "./", "../")
_BOOTSTRAP_SUFFIXES = (".boot", ".bootstrap")


def looks_like_path(arg: str) -> bool:
    """Whether ``arg`` is written as a local path (``/``, ``./``, ``../`` first, or a ``.boot`` /
    ``.bootstrap`` name), so it must never be taken for an image reference."""
    return arg.startswith(_PATH_PREFIXES) or arg in (".", "..") or arg.endswith(_BOOTSTRAP_SUFFIXES)


def resolve_image_argument(arg: str) -> tuple[str, dict[str, Any] | None]:
    """Return ``(bootstrap_path, config)``: ``config`` is None for a bootstrap file, else the nydusd
    config (v1 dict) that reads the referenced image's blobs."""
    if os.path.exists(arg):
        return arg, None
    if looks_like_path(arg):
        raise UsageError(f"{arg}: no such bootstrap file")
    from .plugins import get_manager

    manager = get_manager()
    answers: list[tuple[str, tuple[str, dict[str, Any]]]] = []
    for impl in manager.pm.hook.nydus_resolve_image.get_hookimpls():
        with plugin_errors(UsageError, f"{arg}: plugin '{impl.plugin_name}' failed to resolve the "
                           "image reference"):
            # pluggy types a hook implementation as returning object; the hookspec declares this shape
            result = cast("tuple[str, dict[str, Any]] | None", impl.function(reference=arg))
        if result is not None:
            answers.append((impl.plugin_name, result))
    if len(answers) > 1:  # never let pluggy's call order pick one
        names = " and ".join(sorted(f"'{name}'" for name, _ in answers))
        raise DuplicatePluginError(f"{arg}: plugins {names} both resolve this image reference; "
                                   f"disable one (NYDUS_DISABLE_PLUGINS)")
    answer = answers[0][1] if answers else None
    if answer is None:
        if "/" in arg or ":" in arg:
            raise UsageError(f"{arg}: no such bootstrap file, and no installed plugin resolves image "
                             "references (install it with: pip install nydus-converter-oci)")
        raise UsageError(f"{arg}: no such bootstrap file")
    path, config = answer
    return os.fspath(path), config
