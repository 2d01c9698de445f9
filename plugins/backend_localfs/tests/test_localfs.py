"""localfs specifics: upstream's config keys, lookup order, blob_file mode, id forms, error mapping."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nydus_backend_localfs import LocalFsBackend

from nydus_core.errors import (
    BackendError,
    BlobNotFoundError,
    ConfigError,
    PermissionDeniedError,
    UnsupportedOperationError,
)
from nydus_core.plugins import PluginManager


def _blob(tmp: Path, data: bytes) -> str:
    blob_id = hashlib.sha256(data).hexdigest()
    (tmp / blob_id).write_bytes(data)
    return blob_id


def test_registered_as_localfs() -> None:
    assert PluginManager(strict=False).load().registry("backend").get("localfs") is LocalFsBackend


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({}, "dir"),
        ({"dir": "", "blob_file": ""}, "dir"),
        ({"alt_dirs": ["/tmp"]}, "dir"),
        ({"dir": 5}, "dir"),
        ({"blob_file": ["x"]}, "blob_file"),
        ({"dir": "/tmp", "alt_dirs": "/tmp"}, "alt_dirs"),
        ({"dir": "/tmp", "alt_dirs": [1]}, "alt_dirs"),
    ],
)
def test_config_errors_name_the_key(config: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        LocalFsBackend(config)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_config_defaults() -> None:
    assert LocalFsBackend.validate_config({"dir": "/d"}) == {"dir": "/d", "blob_file": "", "alt_dirs": []}
    # Keys upstream documents but ignores (readahead) are accepted and kept.
    assert LocalFsBackend.validate_config({"blob_file": "/b", "readahead": True})["readahead"] is True


def test_dir_is_searched_before_alt_dirs(tmp_path: Path) -> None:
    main, alt1, alt2 = (tmp_path / n for n in ("main", "alt1", "alt2"))
    for d in (main, alt1, alt2):
        d.mkdir()
    blob_id = "ab" * 32
    (alt1 / blob_id).write_bytes(b"from alt1")
    (alt2 / blob_id).write_bytes(b"from alt2")
    backend = LocalFsBackend({"dir": str(main), "alt_dirs": [str(alt1), str(alt2)]})
    assert backend.read(blob_id, 0, 100) == b"from alt1"
    backend.close()
    (main / blob_id).write_bytes(b"from main")
    assert LocalFsBackend({"dir": str(main), "alt_dirs": [str(alt1)]}).read(blob_id, 0, 100) == b"from main"


def test_sha256_prefix_is_accepted(tmp_path: Path) -> None:
    blob_id = _blob(tmp_path, b"prefixed")
    backend = LocalFsBackend({"dir": str(tmp_path)})
    assert backend.read(f"sha256:{blob_id}", 0, 100) == b"prefixed"
    assert backend.size(f"sha256:{blob_id}") == 8
    assert backend.exists(f"sha256:{blob_id}")


def test_blob_file_serves_every_id(tmp_path: Path) -> None:
    blob = tmp_path / "single.blob"
    blob.write_bytes(b"0123456789")
    backend = LocalFsBackend({"blob_file": str(blob)})
    for blob_id in ("aa" * 32, "bb" * 32, "sha256:" + "cc" * 32, "not-even-hex"):
        assert backend.size(blob_id) == 10
        assert backend.read(blob_id, 3, 4) == b"3456"
    assert len(backend._fds) == 1  # one descriptor for the one file


def test_blob_file_is_read_only(tmp_path: Path) -> None:
    blob = tmp_path / "single.blob"
    blob.write_bytes(b"x")
    with pytest.raises(UnsupportedOperationError, match="blob_file"):
        LocalFsBackend({"blob_file": str(blob)}).write("aa" * 32, io.BytesIO(b"y"), 1)


def test_missing_blob_file(tmp_path: Path) -> None:
    backend = LocalFsBackend({"blob_file": str(tmp_path / "nope.blob")})
    with pytest.raises(BlobNotFoundError, match=r"nope\.blob"):
        backend.size("aa" * 32)
    assert backend.exists("aa" * 32) is False


def test_not_found_message_names_paths_and_missing_dirs(tmp_path: Path) -> None:
    backend = LocalFsBackend({"dir": str(tmp_path), "alt_dirs": [str(tmp_path / "gone")]})
    with pytest.raises(BlobNotFoundError) as info:
        backend.read("ee" * 32, 0, 1)
    message = str(info.value)
    assert str(tmp_path / ("ee" * 32)) in message
    assert str(tmp_path / "gone" / ("ee" * 32)) in message
    assert f"missing directories: {tmp_path / 'gone'}" in message


@pytest.mark.parametrize("bad", ["../etc/passwd", "..", ".", "", "a/b", "sha256:", "x\0y"])
def test_ids_that_are_not_file_names_are_rejected(tmp_path: Path, bad: str) -> None:
    backend = LocalFsBackend({"dir": str(tmp_path)})
    with pytest.raises(BlobNotFoundError, match="invalid blob id"):
        backend.size(bad)


def test_a_directory_is_not_a_blob(tmp_path: Path) -> None:
    (tmp_path / ("dd" * 32)).mkdir()
    with pytest.raises(BackendError, match="not a regular file"):
        LocalFsBackend({"dir": str(tmp_path)}).read("dd" * 32, 0, 1)


def test_descriptor_is_cached_and_reads_are_pread(tmp_path: Path) -> None:
    blob_id = _blob(tmp_path, bytes(range(256)) * 64)
    backend = LocalFsBackend({"dir": str(tmp_path)})
    backend.read(blob_id, 0, 1)
    fd, path = backend._fds[blob_id]
    assert path == str(tmp_path / blob_id)
    assert backend.readv(blob_id, [(256, 2), (10, 1)]) == [b"\x00\x01", b"\x0a"]
    assert backend._fds[blob_id][0] == fd
    assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # pread never moves the file position
    backend.close()
    assert blob_id not in backend._fds
    with pytest.raises(OSError):
        os.fstat(fd)
    assert backend.read(blob_id, 255, 1) == b"\xff"  # reopened after close


def test_write_is_atomic_and_replaces_cached_descriptor(tmp_path: Path) -> None:
    blob_dir = tmp_path / "new" / "blobs"  # created on first write
    backend = LocalFsBackend({"dir": str(blob_dir)})
    blob_id = "ab" * 32
    backend.write(blob_id, io.BytesIO(b"one"), 3)
    assert backend.read(blob_id, 0, 10) == b"one"
    backend.write(blob_id, io.BytesIO(b"second"), 6)
    assert backend.read(blob_id, 0, 10) == b"second"
    assert sorted(os.listdir(blob_dir)) == [blob_id]  # no temporary files left behind
    assert stat.S_IMODE(os.stat(blob_dir / blob_id).st_mode) == 0o644


def test_failed_write_leaves_old_blob_and_no_temp_file(tmp_path: Path) -> None:
    backend = LocalFsBackend({"dir": str(tmp_path)})
    blob_id = _blob(tmp_path, b"old content")

    class Exploding(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError(5, "Input/output error", "/dev/source")
            return b"new" * 1000

    with pytest.raises(BackendError):
        backend.write(blob_id, Exploding())
    assert backend.read(blob_id, 0, 100) == b"old content"
    assert os.listdir(tmp_path) == [blob_id]


def test_readers_during_rewrites_see_whole_blobs(tmp_path: Path) -> None:
    """Concurrent readers never see a mix of two versions while a writer replaces the blob."""
    backend = LocalFsBackend({"dir": str(tmp_path)})
    blob_id = "cd" * 32
    versions = [bytes([v]) * 200_000 for v in range(1, 6)]
    backend.write(blob_id, io.BytesIO(versions[0]))
    seen: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            reader_backend = LocalFsBackend({"dir": str(tmp_path)})
            seen.append(reader_backend.read(blob_id, 0, 200_000))
            reader_backend.close()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for v in versions[1:]:
        backend.write(blob_id, io.BytesIO(v), len(v))
    stop.set()
    for t in threads:
        t.join()
    assert seen and all(s in versions for s in seen)


# -- permission errors (as root, checked in a child that drops to nobody) -------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="nydus-localfs-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _as_unprivileged(fn: Callable[[], str]) -> str:
    """Run ``fn`` as an unprivileged user (a forked child dropping root) and return its result."""
    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            result = fn()
        except BaseException as exc:
            result = f"child failed: {exc!r}"
        os.write(w, result.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_unreadable_blob_is_permission_denied(shared_dir: Path) -> None:
    blob_id = _blob(shared_dir, b"secret")
    (shared_dir / blob_id).chmod(0o000)

    def attempt() -> str:
        try:
            LocalFsBackend({"dir": str(shared_dir)}).read(blob_id, 0, 6)
        except PermissionDeniedError as exc:
            return f"PermissionDeniedError: {exc}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return "read succeeded"

    result = _as_unprivileged(attempt)
    assert result.startswith("PermissionDeniedError:"), result
    assert str(shared_dir / blob_id) in result


def test_unwritable_dir_is_permission_denied(shared_dir: Path) -> None:
    def attempt() -> str:
        try:
            LocalFsBackend({"dir": str(shared_dir)}).write("ab" * 32, io.BytesIO(b"x"), 1)
        except PermissionDeniedError as exc:
            return f"PermissionDeniedError: {exc}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return "write succeeded"

    result = _as_unprivileged(attempt)
    assert result.startswith("PermissionDeniedError:"), result
    assert str(shared_dir) in result
