"""Prefetch the whole image (every regular file, in the image's depth-first name order) — what
``nydusify mount --prefetch`` asks for. Hinted paths, if any, go first."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from nydus_core.rafs.image import RafsImage
from nydus_core.storage.prefetch import BasePrefetcher, resolve_hints


class AllPrefetcher(BasePrefetcher):
    """Fetches everything; ``prefetch_all`` is implied."""

    name = "all"
    covers_all = True

    def targets(self, image: RafsImage, hints: Iterable[str]) -> Iterator[int]:
        """Return the hinted inodes, then every inode of the image."""
        yield from resolve_hints(image, hints)
        for _path, ino in image.walk():
            yield ino
