"""Which id to ask the backend for, per blob of an image.

Blobs built with ``--blob-inline-meta`` carry the placeholder id ``"x" * 64`` in the bootstrap
embedded in them (rafs-format.md §6.4). As upstream nydusd does, the real id comes from the
bootstrap's file name (the converter names a layer's bootstrap after the layer digest: the file
prefix, all extensions dropped, ``sha256:`` tolerated), unless the caller names it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from ..errors import FormatError
from ..rafs.model import BlobInfo
from ..rafs.toc import blob_id_from_path, is_placeholder_blob_id

__all__ = ["blob_id_from_path", "is_blob_id", "resolve_blob_ids"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


def is_blob_id(text: str) -> bool:
    """Return whether ``text`` is a 64-char lowercase hex blob id."""
    return bool(_HEX64.fullmatch(text))


def resolve_blob_ids(
    blobs: Sequence[BlobInfo],
    *,
    bootstrap_path: str | os.PathLike[str] | None = None,
    overrides: Mapping[int, str] | None = None,
    inline_blob_id: str | None = None,
) -> list[str]:
    """Return the backend id of every blob, in blob-table order.

    ``overrides`` maps blob index -> id (the caller knows better). A blob recorded with the inlined
    meta placeholder takes ``inline_blob_id`` or else the id named by the bootstrap file name; when
    neither is available that is a :class:`FormatError` telling the user what to pass.
    """
    ids: list[str] = []
    for blob in blobs:
        if overrides and blob.blob_index in overrides:
            ids.append(overrides[blob.blob_index].removeprefix("sha256:"))
            continue
        bid = blob.blob_id
        if is_placeholder_blob_id(bid) or not bid:
            real = inline_blob_id.removeprefix("sha256:") if inline_blob_id else None
            if real is None and bootstrap_path is not None:
                real = blob_id_from_path(bootstrap_path)
            if real is None:
                where = os.fspath(bootstrap_path) if bootstrap_path is not None else "image"
                raise FormatError(
                    f"{where}: blob {blob.blob_index} has the inlined-meta placeholder id; name the "
                    f"bootstrap after the blob's sha256 digest or pass the blob id explicitly"
                )
            bid = real
        ids.append(bid)
    return ids
