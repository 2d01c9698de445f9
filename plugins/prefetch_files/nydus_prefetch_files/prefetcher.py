"""Prefetch an explicit list of absolute paths, in the given order: what nydusd's
``--prefetch-files FILE`` (one path per line) and the mount API's ``prefetch_files`` pass."""

from __future__ import annotations

import os
from collections.abc import Iterable

from nydus_core.errors import UsageError
from nydus_core.interfaces import PrefetchRequest
from nydus_core.rafs.image import RafsImage
from nydus_core.storage.prefetch import BasePrefetcher, resolve_hints


def read_list(path: str | os.PathLike[str]) -> list[str]:
    """Read a newline-separated list of paths (blank lines and ``#`` comments ignored)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise UsageError(f"{os.fspath(path)}: cannot read the prefetch list: {exc.strerror or exc}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


class FilesPrefetcher(BasePrefetcher):
    """Fetches the files (and directories, recursively) named by the hints; paths the image lacks
    are logged and skipped, as upstream does. With ``prefetch_all`` the rest of the image follows."""

    name = "files"

    @classmethod
    def applies(cls, request: PrefetchRequest) -> int | None:
        """Rank 20 when there are paths to prefetch (nydusd ``--prefetch-files``)."""
        return 20 if request.hints else None

    def targets(self, image: RafsImage, hints: Iterable[str]) -> Iterable[int]:
        """Return the inodes of the hinted paths."""
        return resolve_hints(image, hints)
