"""Looking after a blobcache ``work_dir`` from outside a reader: list, measure, collect garbage.

Safe while readers run: a blob is removed only under an exclusive ``flock`` of its data file,
which no process holds while another has the blob open.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Any

from .journal import HEADER, HEADER_SIZE, parse_journal

__all__ = ["DATA_SUFFIX", "MAP_SUFFIX", "list_entries", "remove_blob", "run_gc"]

DATA_SUFFIX = ".blob.data"
MAP_SUFFIX = ".chunk_map"


def _in_use(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def list_entries(work_dir: str) -> list[dict[str, Any]]:
    """Return one dict per cached blob: ``blob_id``, ``data_file``, ``disk_usage`` (bytes allocated,
    data + chunk map), ``size`` (apparent size of the data file), ``ready_chunks``, ``ready_bytes``,
    ``chunk_count`` (0 when the image did not record it), ``last_used`` (epoch seconds), ``in_use``."""
    out: list[dict[str, Any]] = []
    try:
        names = sorted(os.listdir(work_dir))
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(DATA_SUFFIX):
            continue
        blob_id = name[: -len(DATA_SUFFIX)]
        data_path = os.path.join(work_dir, name)
        map_path = os.path.join(work_dir, blob_id + MAP_SUFFIX)
        try:
            st = os.stat(data_path)
        except FileNotFoundError:
            continue
        usage = st.st_blocks * 512
        last = st.st_mtime
        ready_chunks = ready_bytes = chunk_count = 0
        try:
            with open(map_path, "rb") as f:
                raw = f.read()
            mst = os.stat(map_path)
            usage += mst.st_blocks * 512
            last = max(last, mst.st_mtime)
            js = parse_journal(raw)
            if js.valid:
                ready_chunks = len(js.ready)
                ready_bytes = js.ready.total_size()
                chunk_count = HEADER.unpack_from(raw, 0)[4] if len(raw) >= HEADER_SIZE else 0
        except FileNotFoundError:
            pass
        out.append({
            "blob_id": blob_id, "data_file": data_path, "disk_usage": usage, "size": st.st_size,
            "ready_chunks": ready_chunks, "ready_bytes": ready_bytes, "chunk_count": chunk_count,
            "last_used": last, "in_use": _in_use(data_path),
        })
    return out


def remove_blob(work_dir: str, blob_id: str) -> bool:
    """Delete a blob's cache files unless some process has the blob open; return whether removed."""
    data_path = os.path.join(work_dir, blob_id + DATA_SUFFIX)
    map_path = os.path.join(work_dir, blob_id + MAP_SUFFIX)
    try:
        fd = os.open(data_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(map_path)
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        st, cur = os.fstat(fd), None
        with contextlib.suppress(FileNotFoundError):
            cur = os.stat(data_path)
        if cur is None or (cur.st_dev, cur.st_ino) != (st.st_dev, st.st_ino):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(map_path)
        os.unlink(data_path)
        return True
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_gc(work_dir: str, *, max_size: int | None = None, remove_all: bool = False) -> list[dict[str, Any]]:
    """Remove idle blobs, least recently used first, until the total disk usage fits ``max_size``
    (all idle blobs with ``remove_all``); also remove chunk maps without data and stale temporary
    files. Returns the removed blob entries."""
    removed: list[dict[str, Any]] = []
    entries = sorted(list_entries(work_dir), key=lambda e: e["last_used"])
    total = sum(e["disk_usage"] for e in entries)
    for e in entries:
        if not remove_all and (max_size is None or total <= max_size):
            break
        if e["in_use"]:
            continue
        if remove_blob(work_dir, e["blob_id"]):
            removed.append(e)
            total -= e["disk_usage"]
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(work_dir):
            path = os.path.join(work_dir, name)
            if name.endswith(MAP_SUFFIX):
                if not os.path.exists(path[: -len(MAP_SUFFIX)] + DATA_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            elif MAP_SUFFIX + ".tmp." in name:
                pid = name.rsplit(".", 1)[-1]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
    return removed
