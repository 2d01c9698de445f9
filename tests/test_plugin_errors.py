"""`plugin_errors`: whatever a plugin raises where the core calls it ends as one NydusError line,
in the read pipeline, the tools' backend source, chunk decoding and image-reference resolution."""

from __future__ import annotations

import hashlib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from nydus_testkit.fakes import DirBackend
from nydus_testsupport.storage_helpers import build_image

from nydus_core.errors import (
    BackendError,
    BlobNotFoundError,
    IntegrityError,
    NydusError,
    UsageError,
    describe,
    plugin_errors,
)
from nydus_core.plugins import PluginManager, compressor_by_id, digester_by_id, set_manager
from nydus_core.rafs.chunkdata import decode_chunk
from nydus_core.rafs.constants import ChunkFlags
from nydus_core.rafs.image import open_image
from nydus_core.rafs.model import ChunkInfo
from nydus_core.storage import ReadPipeline
from nydus_core.tools.datasource import BackendChunkSource


def test_foreign_exceptions_become_the_given_error_chained() -> None:
    with pytest.raises(BackendError) as info, plugin_errors(BackendError, "backend 'x' reading blob b"):
        raise ValueError("bad\nstate")
    assert str(info.value) == "backend 'x' reading blob b: ValueError: bad state"
    assert isinstance(info.value.__cause__, ValueError)  # --debug shows the plugin's traceback


def test_nydus_errors_pass_or_are_reworded() -> None:
    original = BlobNotFoundError("no blob b")
    with pytest.raises(BlobNotFoundError) as passed, plugin_errors(BackendError, "reading"):
        raise original
    assert passed.value is original
    with (pytest.raises(IntegrityError, match=r"^chunk 3: cannot decompress: corrupt frame$"),
          plugin_errors(IntegrityError, "chunk 3: cannot decompress", reword=NydusError)):
        raise BackendError("corrupt frame")
    with pytest.raises(KeyboardInterrupt), plugin_errors(BackendError, "reading"):
        raise KeyboardInterrupt
    with plugin_errors(BackendError, "reading"):
        pass  # no exception: nothing happens


def test_describe_is_one_line_and_bounded() -> None:
    assert describe(RuntimeError()) == "RuntimeError"
    assert describe(OSError("a\n  b")) == "OSError: a b"
    assert len(describe(ValueError("x" * 1000))) < 420


class _BuggyBackend(DirBackend):
    """A backend plugin with a bug: its reads raise a foreign exception."""

    name = "buggy"

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        raise KeyError("cursor")


def test_backend_bug_reaches_pipeline_readers_as_backend_error(tmp_path: Path) -> None:
    boot, blobs, _ = build_image(str(tmp_path), {"f": b"data" * 4096}, compressor="none")
    img = open_image(boot)
    p = ReadPipeline(img, _BuggyBackend({"dir": blobs}), amplify_io=0, workers=1)
    try:
        with pytest.raises(BackendError, match=r"reading blob [0-9a-f]{64} at 0\+\d+: KeyError: 'cursor'"):
            p.read(img.resolve("/f"), 0, 100)
    finally:
        p.close()
    source = BackendChunkSource(_BuggyBackend({"dir": blobs}))
    with pytest.raises(BackendError, match=r"backend 'buggy' failed reading blob .* KeyError"):
        source.read(img, img.resolve("/f"))


class _BuggyCompressor:
    """A compressor plugin whose library fails on its input with a non-nydus error."""

    def decompress(self, data: bytes, size: int) -> bytes:
        raise ZeroDivisionError("libfoo: no frame")


def test_compressor_bug_is_an_integrity_error_naming_the_chunk() -> None:
    data = b"nydus " * 100
    stored = compressor_by_id(0).compress(data)
    c = ChunkInfo(hashlib.sha256(data).digest(), 0, ChunkFlags.COMPRESSED, len(stored), len(data),
                  0, 0, 0, 7, 0)
    with pytest.raises(IntegrityError, match=r"chunk 7 .*cannot decompress: ZeroDivisionError: libfoo"):
        decode_chunk(stored, c, _BuggyCompressor(), digester_by_id(1), validate=True,
                     blob_id="ab" * 32)


def test_image_reference_plugin_bug_is_one_usage_error(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nydus_test_buggy_resolver.py").write_text(
        "from nydus_core import PLUGIN_API_VERSION, hookimpl\n"
        "NYDUS_PLUGIN_API = PLUGIN_API_VERSION\n"
        "@hookimpl\n"
        "def nydus_resolve_image(reference):\n"
        "    return {}['missing']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from nydus_core.imageref import resolve_image_argument

    ep = EntryPoint(name="buggy-resolver", value="nydus_test_buggy_resolver", group="nydus")
    set_manager(PluginManager(entry_points=[ep], strict=True).load())
    try:
        with pytest.raises(UsageError) as info:
            resolve_image_argument("registry.invalid/repo:tag")
    finally:
        set_manager(None)
    assert str(info.value) == ("registry.invalid/repo:tag: plugin 'buggy-resolver' failed to resolve the "
                               "image reference: KeyError: 'missing'")
