"""``nydus-image stat``: chunk statistics of bootstraps, and their dedup against a target image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..rafs.image import open_image


def _chunk_ids(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[bytes, int]]:
    with open_image(path) as image:
        ids: dict[bytes, int] = {}
        files = 0
        size = 0
        seen: set[int] = set()
        for _p, ino in image.walk():
            a = image.getattr(ino)
            if not a.is_reg or ino in seen:
                continue
            seen.add(ino)
            files += 1
            size += a.size
            for c in image.chunks(ino):
                ids.setdefault(c.block_id, c.uncompressed_size)
        info = {"bootstrap": os.fspath(path), "fs_version": image.version, "files": files,
                "file_bytes": size, "distinct_chunks": len(ids),
                "distinct_chunk_bytes": sum(ids.values())}
        return info, ids


def stat_images(bootstraps: list[str | os.PathLike[str]], target: str | None = None) -> dict[str, Any]:
    """Return per-image chunk statistics, the dedup across them, and against ``target`` if given."""
    images = []
    union: dict[bytes, int] = {}
    for b in bootstraps:
        info, ids = _chunk_ids(b)
        images.append(info)
        union.update(ids)
    total = sum(i["distinct_chunk_bytes"] for i in images)
    out: dict[str, Any] = {
        "images": images,
        "distinct_chunks": len(union),
        "distinct_chunk_bytes": sum(union.values()),
        "dedup_saved_bytes": total - sum(union.values()),
    }
    if target:
        _tinfo, tids = _chunk_ids(target)
        shared = {k: v for k, v in union.items() if k in tids}
        out["target"] = {"bootstrap": target, "shared_chunks": len(shared),
                         "shared_bytes": sum(shared.values()),
                         "new_bytes": sum(union.values()) - sum(shared.values())}
    return out


def bootstraps_in(directory: str | os.PathLike[str]) -> list[Path]:
    """Return the RAFS bootstraps in ``directory`` (files whose first bytes look like RAFS)."""
    from ..rafs.constants import EROFS_MAGIC, EROFS_SUPER_OFFSET, RAFS_V5_MAGIC

    found = []
    for p in sorted(Path(directory).iterdir()):
        if not p.is_file():
            continue
        with open(p, "rb") as f:
            head = f.read(EROFS_SUPER_OFFSET + 4)
        if head[:4] == RAFS_V5_MAGIC.to_bytes(4, "little") or (
            len(head) >= EROFS_SUPER_OFFSET + 4
            and head[EROFS_SUPER_OFFSET:] == EROFS_MAGIC.to_bytes(4, "little")
        ):
            found.append(p)
    return found
