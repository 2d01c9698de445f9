"""BackendContract on the real localfs backend: blobs in `dir`, and blobs found through `alt_dirs`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from nydus_backend_localfs import LocalFsBackend
from nydus_testkit import BackendContract


class TestLocalFsDir(BackendContract):
    writable = True

    @pytest.fixture
    def blob_dir(self, tmp_path: Path) -> Path:
        path = tmp_path / "blobs"
        path.mkdir()
        return path

    @pytest.fixture
    def backend(self, blob_dir: Path) -> LocalFsBackend:
        backend = LocalFsBackend({"dir": str(blob_dir)})
        yield backend
        backend.close()

    @pytest.fixture
    def put_blob(self, blob_dir: Path) -> Callable[[str, bytes], None]:
        return lambda blob_id, data: (blob_dir / blob_id).write_bytes(data)


class TestLocalFsAltDirs(BackendContract):
    """Every blob lives in the second alt dir; `dir` (where writes go) starts empty."""

    writable = True

    @pytest.fixture
    def dirs(self, tmp_path: Path) -> list[Path]:
        paths = [tmp_path / name for name in ("main", "alt1", "alt2")]
        for p in paths:
            p.mkdir()
        return paths

    @pytest.fixture
    def backend(self, dirs: list[Path]) -> LocalFsBackend:
        backend = LocalFsBackend({"dir": str(dirs[0]), "alt_dirs": [str(dirs[1]), str(dirs[2])]})
        yield backend
        backend.close()

    @pytest.fixture
    def put_blob(self, dirs: list[Path]) -> Callable[[str, bytes], None]:
        return lambda blob_id, data: (dirs[2] / blob_id).write_bytes(data)
