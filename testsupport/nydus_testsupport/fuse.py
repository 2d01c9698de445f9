"""Helpers for tests and benchmarks that mount real images with the real ``nydusd``.

- :class:`NydusdProcess` starts the installed ``nydusd`` console script, waits until the mount is up
  (or raises with the daemon's last error line), and always cleans up: SIGTERM, then
  ``fusermount3 -u -z`` if anything is still mounted.
- :func:`snapshot_tree` records what a container sees of a tree (``lstat`` fields, link targets,
  xattrs, content digests, hard-link groups) so a mount can be compared with its source;
  :func:`tar_bytes` is ``tar`` of a tree, for the byte-for-byte comparison.
- :func:`fuse_unavailable` says why FUSE tests cannot run here (None when they can).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nydus_frontend_fuse.ctl import ApiClient

from nydus_core.mounts import force_unmount, is_mountpoint

__all__ = [
    "STOP_TIMEOUT",
    "NydusdProcess",
    "fuse_unavailable",
    "script",
    "snapshot_tree",
    "tar_bytes",
]


#: Seconds :meth:`NydusdProcess.stop` waits after SIGTERM before killing. A clean stop waits until
#: what the blob cache wrote is durable and recorded (its ``fdatasync``), which a disk busy with
#: other writeback can hold up for tens of seconds: with the former 20 s a CI run killed a daemon
#: mid-sync and the chunk it had served was not recorded. A hung daemon is still caught by
#: pytest-timeout.
STOP_TIMEOUT = 120.0


def fuse_unavailable() -> str | None:
    """Return why a FUSE mount cannot be made here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if os.geteuid() != 0:
        return "mounting FUSE with allow_other needs root in these tests"
    return None


def script(name: str) -> str:
    """Return the path of an installed console script next to this Python (``nydusd``, ...)."""
    return str(Path(sys.executable).with_name(name))


class NydusdProcess:
    """A ``nydusd`` running in a child process, mounted at ``mountpoint``.

    ``args`` are nydusd flags other than ``-M`` (and ``-A``, added when ``apisock`` is set).
    """

    def __init__(self, mountpoint: str | os.PathLike[str], args: Sequence[str], *,
                 apisock: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
                 command: Sequence[str] | None = None) -> None:
        self.mountpoint = os.path.abspath(mountpoint)
        self.args = [str(a) for a in args]
        self.apisock = os.fspath(apisock) if apisock is not None else None
        self.env = env
        self.command = list(command) if command else [script("nydusd")]
        self.proc: subprocess.Popen[bytes] | None = None
        #: whether :meth:`stop` had to SIGKILL the daemon (it did not stop cleanly in time)
        self.killed = False
        self._api: ApiClient | None = None
        fd, self.log_path = tempfile.mkstemp(prefix="nydusd-test-", suffix=".log")
        self._log = os.fdopen(fd, "wb")

    @property
    def api(self) -> ApiClient:
        """A client of the daemon's API socket (closed with the daemon)."""
        if self.apisock is None:
            raise RuntimeError("this daemon was started without an API socket")
        if self._api is None:
            self._api = ApiClient(self.apisock, timeout=30)
        return self._api

    def start(self, timeout: float = 30.0) -> NydusdProcess:
        """Start the daemon and wait until it is mounted; RuntimeError with its output otherwise."""
        argv = [*self.command, "-M", self.mountpoint, *self.args]
        if self.apisock:
            argv += ["-A", self.apisock]
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if is_mountpoint(self.mountpoint) and (self.apisock is None or os.path.exists(self.apisock)):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"nydusd exited with {self.proc.returncode}: {self.output().strip()}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nydusd did not mount {self.mountpoint} in {timeout}s: {self.output()}")

    def output(self) -> str:
        """Return what the daemon logged so far."""
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def alive(self) -> bool:
        """Return whether the daemon process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """Send a signal to the daemon."""
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the daemon to exit; return its exit status."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the daemon and wait; then make sure nothing stays mounted.

        A daemon still running ``timeout`` seconds after SIGTERM is killed (``killed`` is set, a
        warning says so, and the exit status is -9): what its cache had not yet made durable is
        then lost, so a test that checks the cache afterwards must check the status too.
        """
        rc = None
        if self._api is not None:
            self._api.close()
            self._api = None
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    rc = self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.killed = True
                    warnings.warn(f"nydusd at {self.mountpoint} still running {timeout:g} s after "
                                  "SIGTERM: killed", stacklevel=2)
                    rc = self.proc.wait(timeout)
            elif self.proc is not None:
                rc = self.proc.returncode
        finally:
            force_unmount(self.mountpoint)
            self._log.close()
        return rc

    def close(self) -> None:
        """Stop the daemon and remove its log."""
        self.stop()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    def __enter__(self) -> NydusdProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        if name.startswith("security.selinux"):
            continue
        with contextlib.suppress(OSError):
            out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out


def snapshot_tree(root: str | os.PathLike[str], *, data: bool = True, xattrs: bool = True,
                  ignore: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Return what a container sees of every entry under ``root``, keyed by relative path.

    Per entry: type and permission bits, uid, gid, nlink, mtime (ns), size (not for directories,
    whose size is filesystem-specific), rdev (devices), link target, xattrs, sha256 of regular
    files' data and, for hard links, the first path (in sorted order) of the inode's group."""
    base = os.fspath(root)
    out: dict[str, dict[str, Any]] = {}
    first_of: dict[int, str] = {}

    def visit(rel: str) -> Iterator[str]:
        yield rel
        full = os.path.join(base, rel) if rel != "." else base
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(full)):
                child = name if rel == "." else f"{rel}/{name}"
                if child in ignore:
                    continue
                yield from visit(child)

    for rel in visit("."):
        full = base if rel == "." else os.path.join(base, rel)
        st = os.lstat(full)
        e: dict[str, Any] = {
            "mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink,
            "mtime_ns": st.st_mtime_ns,
        }
        if not stat.S_ISDIR(st.st_mode):
            e["size"] = st.st_size
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            e["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if stat.S_ISLNK(st.st_mode):
            e["target"] = os.readlink(full)
        if xattrs:
            e["xattrs"] = _xattrs(full)
        if stat.S_ISREG(st.st_mode):
            if data:
                h = hashlib.sha256()
                with open(full, "rb") as fh:
                    while block := fh.read(1 << 20):
                        h.update(block)
                e["sha256"] = h.hexdigest()
            if st.st_nlink > 1:
                e["link_group"] = first_of.setdefault(st.st_ino, rel)
        out[rel] = e
    return out


def tar_bytes(root: str | os.PathLike[str], *, exclude: Sequence[str] = ()) -> bytes:
    """Return ``tar cf - .`` of ``root`` (GNU format, names sorted, numeric owners)."""
    argv = ["tar", "--sort=name", "--numeric-owner", "--format=gnu", "-C", os.fspath(root)]
    argv += [f"--exclude=./{e}" for e in exclude]
    argv += ["-cf", "-", "."]
    res = subprocess.run(argv, capture_output=True, check=False)
    if res.returncode not in (0, 1):
        raise RuntimeError(f"tar failed: {res.stderr.decode(errors='replace')}")
    return res.stdout
