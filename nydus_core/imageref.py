"""Command-line image arguments: an existing file is a bootstrap, anything else an image reference
that a plugin resolves (``nydus_resolve_image``; nydus-converter-oci handles registry references)."""

from __future__ import annotations

import os
from typing import Any

from .errors import NydusError, UsageError


def resolve_image_argument(arg: str) -> tuple[str, dict[str, Any] | None]:
    """Return ``(bootstrap_path, config)``: ``config`` is None for a bootstrap file, else the nydusd
    config (v1 dict) that reads the referenced image's blobs."""
    if os.path.exists(arg):
        return arg, None
    from .plugins import get_manager

    manager = get_manager()
    try:
        answer = manager.pm.hook.nydus_resolve_image(reference=arg)
    except NydusError:
        raise
    except Exception as exc:  # a plugin bug must still end in one line
        raise UsageError(f"{arg}: resolving the image reference failed: {type(exc).__name__}: {exc}") from exc
    if answer is None:
        if "/" in arg or ":" in arg:
            raise UsageError(f"{arg}: no such bootstrap file, and no installed plugin resolves image "
                             "references (install it with: pip install nydus-converter-oci)")
        raise UsageError(f"{arg}: bootstrap file not found")
    path, config = answer
    return os.fspath(path), config
