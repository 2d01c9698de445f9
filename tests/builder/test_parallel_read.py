"""Small files read, digested and compressed by worker processes: the image is byte-identical to a
serial build's, and a file that cannot be read is still named in one line."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from nydus_testsupport.trees import make_sample_tree

from nydus_core.builder import BuildOptions, build, small_files, source_dir
from nydus_core.errors import BuildError

CS = 0x1000


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Every inode kind, multi-chunk files between the small ones, duplicates within and across
    batches, 600 small files in one directory."""
    tmp = tmp_path_factory.mktemp("par")
    src = make_sample_tree(tmp / "src", chunk_size=CS, big_dir=600).root
    for i in range(40):  # the same content in several directories: dedup across batches
        d = src / f"dups{i % 4}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}").write_bytes(b"same small content" * (1 + i % 3))
    return src


@pytest.fixture
def small_batches(monkeypatch):
    """Workers for a tree this small, in batches of 7 files (many batches, big files between)."""
    monkeypatch.setattr(source_dir, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(small_files, "may_fork", lambda: True)  # threads other tests left do not matter
    monkeypatch.setattr(small_files, "BATCH_FILES", 7)
    monkeypatch.setattr(source_dir, "BATCH_FILES", 7)


def _build(src: Path, out: Path, compressor: str, workers: int) -> tuple[bytes, bytes]:
    result = build(src, "dir-rafs", bootstrap=out / "boot", blob_dir=out / "blobs",
                   options=BuildOptions(chunk_size=CS, compressor=compressor, workers=workers,
                                        blob_toc=True))
    assert result.blob_path is not None
    return (out / "boot").read_bytes(), Path(result.blob_path).read_bytes()


@pytest.mark.parametrize("compressor", ["zstd", "lz4_block", "none"])
def test_parallel_build_is_byte_identical_to_serial(tree, tmp_path, small_batches, compressor):
    serial = _build(tree, tmp_path / "serial", compressor, workers=1)
    parallel = _build(tree, tmp_path / "parallel", compressor, workers=2)
    assert parallel[0] == serial[0]
    assert parallel[1] == serial[1]


def test_unreadable_small_file_is_named(tree, tmp_path, small_batches, monkeypatch):
    """A file gone between its lstat and its read: the build fails naming it, leaving no output."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i:02d}").write_bytes(b"x%d" % i)
    add = source_dir.FileLoader.add

    def remove_then_add(self, node, path):  # after the walk's lstat, before anyone reads it
        if path.endswith(b"/f17"):
            os.unlink(path)
        add(self, node, path)

    monkeypatch.setattr(source_dir.FileLoader, "add", remove_then_add)
    out = tmp_path / "out"
    with pytest.raises(BuildError, match=r"/f17: cannot read: No such file or directory"):
        build(src, "dir-rafs", bootstrap=out / "boot", blob_dir=out / "blobs",
              options=BuildOptions(compressor="zstd", workers=2))
    assert not (out / "boot").exists()
    assert not any((out / "blobs").iterdir())


def _die(batch):
    """A worker that is killed while reading its batch."""
    os._exit(9)


def test_a_worker_that_dies_fails_the_build(tree, tmp_path, small_batches, monkeypatch):
    """Nothing waits for ever on a dead worker: one line, no output left."""
    monkeypatch.setattr(small_files, "_read_batch", _die)
    out = tmp_path / "out"
    with pytest.raises(BuildError, match="worker process reading the source files died"):
        build(tree, "dir-rafs", bootstrap=out / "boot", blob_dir=out / "blobs",
              options=BuildOptions(chunk_size=CS, workers=2))
    assert not (out / "boot").exists()
    assert not any((out / "blobs").iterdir())


_READ_BATCH = small_files._read_batch


def _slow_read_batch(batch):
    """A worker far slower than the walk."""
    time.sleep(0.05)
    return _READ_BATCH(batch)


def test_batches_read_by_the_walk_while_workers_lag(tree, tmp_path, small_batches, monkeypatch):
    """With the workers a full window behind, the walk reads batches itself: same bytes."""
    serial = _build(tree, tmp_path / "serial", "zstd", workers=1)
    here: list[bytes] = []
    read_here = source_dir.read_small_file

    def counted(path, size, digester, compressor):
        here.append(path)
        return read_here(path, size, digester, compressor)

    monkeypatch.setattr(source_dir, "read_small_file", counted)
    monkeypatch.setattr(small_files, "_read_batch", _slow_read_batch)
    parallel = _build(tree, tmp_path / "parallel", "zstd", workers=2)
    assert here, "no batch was read by the walk"
    assert parallel == serial
