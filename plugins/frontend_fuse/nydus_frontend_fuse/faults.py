"""The one place where core errors become FUSE errnos.

Handlers never let an exception other than ``FUSEError`` reach pyfuse3: a :class:`NydusError` from
the read pipeline (a backend failure, a digest mismatch, a malformed bootstrap) becomes ``EIO``; it
is logged once per ``(instance, ino, kind)`` and counted, so a broken chunk read in a loop cannot
flood the log, and the daemon keeps serving everything else.
"""

from __future__ import annotations

import errno
import logging
from collections import Counter

from pyfuse3 import FUSEError

from nydus_core.errors import BlobNotFoundError, IntegrityError, NydusError

log = logging.getLogger("nydusd")

_MAX_REMEMBERED = 100_000


class FaultTranslator:
    """Turns exceptions raised while serving a request into ``FUSEError`` (logging once, counting)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.total = 0
        self._seen: set[tuple[str, int, str]] = set()
        self.recent: list[str] = []

    def translate(self, exc: BaseException, *, where: str, ino: int, op: str) -> FUSEError:
        """Return the FUSEError to raise for ``exc`` seen during ``op`` on ``ino`` of ``where``."""
        if isinstance(exc, FUSEError):
            return exc
        if isinstance(exc, IntegrityError):
            kind, code = "integrity", errno.EIO
        elif isinstance(exc, BlobNotFoundError):
            kind, code = "blob-missing", errno.EIO
        elif isinstance(exc, NydusError):
            kind, code = type(exc).__name__, errno.EIO
        elif isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return FUSEError(exc.errno)
        else:
            kind, code = "internal:" + type(exc).__name__, errno.EIO
        self.total += 1
        self.counts[kind] += 1
        key = (where, ino, kind)
        if key not in self._seen:
            if len(self._seen) < _MAX_REMEMBERED:
                self._seen.add(key)
            message = f"{where}: {op} of inode {ino} failed: {exc}"
            if kind.startswith("internal:"):
                log.error("%s", message, exc_info=exc)
            else:
                log.error("%s (returning EIO; further %s errors on this inode are not logged)",
                          message, kind)
            self.recent.append(message)
            del self.recent[:-50]
        return FUSEError(code)

    def events(self) -> dict[str, object]:
        """Return ``GET /api/v1/daemon/events`` (upstream's error holder shape)."""
        return {"max_errors": 50, "total_errors": self.total, "max_size": 50 * 1024,
                "errors": list(self.recent), "by_kind": dict(self.counts)}
