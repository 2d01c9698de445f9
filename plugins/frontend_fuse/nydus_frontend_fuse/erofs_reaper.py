"""The ``erofs`` driver's reaper: a small child process that removes the daemon's mounts if the
daemon dies without doing it (``kill -9``, a crash).

The daemon starts it with a pipe as its stdin and writes one line per change: ``mount ID PATH``
(a kernel mount it made), ``umount ID`` (one it removed), ``conn N`` (its FUSE connection),
``dir PATH`` (a directory it created), ``done`` (it cleaned up itself). At end of file without
``done`` the reaper detaches the mounts still listed, newest first (EROFS before the blob devices),
but only while the same mount id is still at that path; aborts the FUSE connection (readers of the
EROFS mounts then get EIO instead of hanging) and removes the directories. It ignores
SIGINT/SIGTERM/SIGHUP, so a signal to the whole process group cannot stop it first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import IO

from nydus_core.mounts import mounts_at

from .fuse_session import abort_connection, umount

__all__ = ["Reaper", "main"]


class Reaper:
    """The daemon's handle on its reaper process (every method is a no-op once it is gone)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "nydus_frontend_fuse.erofs_reaper"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, close_fds=True, start_new_session=True)

    def tell(self, line: str) -> None:
        """Send one line (see the module doc)."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(os.fsencode(line.replace("\n", " ")) + b"\n")
            proc.stdin.flush()
        except OSError:
            self._proc = None

    def close(self) -> None:
        """Tell the reaper everything is clean and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.write(b"done\n")
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def _still_there(mount_id: int, path: str) -> bool:
    return any(m.mount_id == mount_id for m in mounts_at(path))


def reap(stream: IO[bytes]) -> None:
    """Follow the daemon's lines until end of file, then clean what it left."""
    mounts: dict[int, str] = {}
    dirs: list[str] = []
    conns: list[int] = []
    for raw in stream:
        word, _, rest = os.fsdecode(raw.rstrip(b"\n")).partition(" ")
        if word == "done":
            return
        if word == "mount":
            number, _, path = rest.partition(" ")
            mounts[int(number)] = path
        elif word == "umount":
            mounts.pop(int(rest), None)
        elif word == "conn":
            conns.append(int(rest))
        elif word == "dir":
            dirs.append(rest)
    for ident in sorted(mounts, reverse=True):
        path = mounts[ident]
        if _still_there(ident, path):
            with contextlib.suppress(OSError):
                umount(path, lazy=True)
    for conn in conns:
        abort_connection(conn)
    for d in reversed(dirs):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def main() -> None:
    """Run the reaper on stdin."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    reap(sys.stdin.buffer)


if __name__ == "__main__":
    main()
