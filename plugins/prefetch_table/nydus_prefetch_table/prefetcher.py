"""Prefetch what the image builder recorded in the bootstrap's prefetch table
(``nydus-image create --prefetch-policy fs``), in the table's order."""

from __future__ import annotations

from collections.abc import Iterable

from nydus_core.interfaces import PrefetchRequest
from nydus_core.rafs.image import RafsImage
from nydus_core.storage.prefetch import BasePrefetcher


class TablePrefetcher(BasePrefetcher):
    """Fetches the inodes of the prefetch table (directories recursively), then, with
    ``prefetch_all``, the rest of the image."""

    name = "table"

    @classmethod
    def applies(cls, request: PrefetchRequest) -> int | None:
        """Rank 10 when prefetch is enabled (``fs_prefetch.enable``)."""
        return 10 if request.enable else None

    def targets(self, image: RafsImage, hints: Iterable[str]) -> Iterable[int]:
        """Return the prefetch table's inodes."""
        return image.prefetch_inodes()
