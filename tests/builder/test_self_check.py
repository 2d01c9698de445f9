"""The self-check of a large bootstrap shared by two processes: the same report as one process,
and an error in either half is raised."""

from __future__ import annotations

import struct

import pytest
from nydus_testsupport.trees import make_sample_tree

from nydus_core.builder import BuildOptions, build, small_files, source_dir
from nydus_core.errors import BuildError
from nydus_core.rafs.reader import open_bootstrap_bytes
from nydus_core.tools import check
from nydus_core.tools.check import self_check


def test_split_check_reports_what_one_process_reports(tmp_path, monkeypatch):
    src = make_sample_tree(tmp_path / "src", big_dir=300).root  # hard links across directories
    build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs")
    data = (tmp_path / "boot").read_bytes()
    serial = self_check(data, "boot", workers=1)
    monkeypatch.setattr(check, "SPLIT_MIN_INODES", 1)
    monkeypatch.setattr(small_files, "may_fork", lambda: True)  # threads other tests left do not matter here
    for subtrees in (2, 5, 64):
        monkeypatch.setattr(check, "SPLIT_SUBTREES", subtrees)
        assert self_check(data, "boot", workers=2).to_json() == serial.to_json()
    assert serial.hardlinks >= 2 and serial.files > 300


def _corrupt_chunk_of(data: bytes, path: str) -> bytes:
    """Set the compressed size of the chunk record of file ``path`` to 0."""
    with open_bootstrap_bytes(data, "boot") as image:
        [chunk] = image.chunks(image.resolve(path))
        table = struct.unpack_from("<Q", data, 1152 + 24)[0]
        pos = next(i for i, c in enumerate(image.chunk_table()) if c.block_id == chunk.block_id)
    out = bytearray(data)
    struct.pack_into("<I", out, table + pos * 80 + 40, 0)
    return bytes(out)


@pytest.mark.parametrize("path", ["/a/f", "/b/f"])  # /a is the child's half, /b the parent's
def test_split_check_raises_an_error_of_either_half(tmp_path, monkeypatch, path):
    src = tmp_path / "src"
    for d in ("a", "b"):
        (src / d).mkdir(parents=True)
        (src / d / "f").write_bytes(d.encode() * 100)
    build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs")
    data = _corrupt_chunk_of((tmp_path / "boot").read_bytes(), path)
    monkeypatch.setattr(check, "SPLIT_MIN_INODES", 1)
    monkeypatch.setattr(check, "SPLIT_SUBTREES", 2)
    monkeypatch.setattr(small_files, "may_fork", lambda: True)
    with pytest.raises(BuildError, match=r"^boot: the bootstrap just built fails its own check: .*size 0"):
        self_check(data, "boot", workers=2)
    with pytest.raises(BuildError, match="compressed size 0"):
        self_check(data, "boot", workers=1)


def test_no_fork_while_other_threads_run(tmp_path, monkeypatch):
    """A library caller running other threads is never forked: neither the self-check nor the
    small-file readers of ``create``."""
    import os
    import threading

    src = make_sample_tree(tmp_path / "src").root
    build(src, "dir-rafs", bootstrap=tmp_path / "boot", blob_dir=tmp_path / "blobs")
    data = (tmp_path / "boot").read_bytes()
    monkeypatch.setattr(check, "SPLIT_MIN_INODES", 1)

    def no_fork() -> int:
        raise AssertionError("forked with another thread running")

    monkeypatch.setattr(os, "fork", no_fork)
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        assert self_check(data, "boot", workers=2).to_json() == self_check(data, "boot", workers=1).to_json()
        monkeypatch.setattr(source_dir, "PARALLEL_MIN_FILES", 1)
        again = build(src, "dir-rafs", bootstrap=tmp_path / "again.boot", blob_dir=tmp_path / "blobs",
                      options=BuildOptions(workers=2))
        assert (tmp_path / "again.boot").read_bytes() == data and again.blob_path is not None
    finally:
        done.set()
        other.join()
