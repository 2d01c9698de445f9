"""The contract suites run on the core's own implementations and fakes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from nydus_testkit import (
    BackendContract,
    CacheContract,
    CompressorContract,
    DigesterContract,
)
from nydus_testkit.fakes import DirectoryChunkCache, MemoryBackend

from nydus_core.builtins import NoneCompressor, Sha256Digester
from nydus_core.interfaces import CachePolicy
from nydus_core.plugins import PluginManager


class TestNoneCompressor(CompressorContract):
    @pytest.fixture
    def compressor(self) -> NoneCompressor:
        return NoneCompressor()


class TestSha256Digester(DigesterContract):
    @pytest.fixture
    def digester(self) -> Sha256Digester:
        return Sha256Digester()


class TestMemoryBackend(BackendContract):
    writable = True

    @pytest.fixture
    def backend(self) -> MemoryBackend:
        return MemoryBackend()

    @pytest.fixture
    def put_blob(self, backend: MemoryBackend) -> Callable[[str, bytes], None]:
        return backend.put


class TestDirectoryChunkCache(CacheContract):
    @pytest.fixture
    def cache_policy(self) -> Callable[[Path], CachePolicy]:
        return lambda work_dir: DirectoryChunkCache({"work_dir": str(work_dir)})


def test_builtins_are_registered_through_the_hooks() -> None:
    """none and sha256 come from the core's own hook implementations, like any plugin's."""
    manager = PluginManager(entry_points=[]).load()
    assert manager.registry("compressor").get("none") is NoneCompressor
    assert manager.registry("digester").get("sha256") is Sha256Digester
    assert manager.registry("compressor").provider("none") == "core"
    assert manager.records["core"].provides == {"compressor": ["none"], "digester": ["sha256"]}


BROKEN_IMPLEMENTATIONS = '''
import hashlib
import pytest
from nydus_core.interfaces import Compressor, Digester
from nydus_testkit import BackendContract, CompressorContract, DigesterContract
from nydus_testkit.fakes import MemoryBackend


class SloppyCompressor(Compressor):
    name = "zstd"          # an upstream name with the wrong ids
    algorithm_id = 1
    def compress(self, data):
        return bytes(data)
    def decompress(self, data, uncompressed_size):
        return bytes(data)  # never checks anything


class WrongDigester(Digester):
    name = "sha256"
    algorithm_id = 1
    super_flag = 0x8
    def new(self):
        return hashlib.sha1()


class OffByOneBackend(MemoryBackend):
    def read(self, blob_id, offset, length):
        return super().read(blob_id, offset + (offset > 0), length)


class TestSloppyCompressor(CompressorContract):
    @pytest.fixture
    def compressor(self):
        return SloppyCompressor()


class TestWrongDigester(DigesterContract):
    @pytest.fixture
    def digester(self):
        return WrongDigester()


class TestOffByOneBackend(BackendContract):
    @pytest.fixture
    def backend(self):
        return OffByOneBackend()

    @pytest.fixture
    def put_blob(self, backend):
        return backend.put
'''


def test_contracts_catch_broken_implementations(tmp_path: Path) -> None:
    """The suites are not vacuous: wrong ids, missing checks and wrong bytes all fail."""
    import subprocess
    import sys

    (tmp_path / "test_broken.py").write_text(BROKEN_IMPLEMENTATIONS)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "--import-mode=importlib",
         "-k", "upstream_ids or garbage or wrong_size or matches_reference or 32_bytes or ranged_read "
         "or write",
         str(tmp_path / "test_broken.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    failed = {line.split("::")[1] + "::" + line.split("::")[2].split(" ")[0]
              for line in proc.stdout.splitlines() if line.startswith("FAILED")}
    assert proc.returncode == 1, proc.stdout + proc.stderr
    must_fail = {
        "TestSloppyCompressor::test_upstream_ids",
        "TestSloppyCompressor::test_garbage_raises_integrity_error[0]",
        "TestSloppyCompressor::test_wrong_size_raises_integrity_error[1]",
        "TestWrongDigester::test_digest_is_32_bytes",
        "TestWrongDigester::test_matches_reference[1024]",
        "TestOffByOneBackend::test_ranged_read[middle]",
        "TestOffByOneBackend::test_write",  # writable = False, but the fake stores blobs
    }
    assert must_fail <= failed, proc.stdout
    assert "TestOffByOneBackend::test_ranged_read[start]" not in failed
