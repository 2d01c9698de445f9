"""CompressorContract on zstd, plus upstream compatibility against a real upstream blob."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import zstandard
from nydus_compressor_zstd import ZstdCompressor
from nydus_testkit import CompressorContract

from nydus_core.errors import IntegrityError


class TestZstd(CompressorContract):
    @pytest.fixture
    def compressor(self) -> ZstdCompressor:
        return ZstdCompressor()


def _upstream_dir() -> Path | None:
    try:
        from nydus_testsupport.fixtures import upstream_dir
    except ImportError:  # the helper is newer than this test
        path = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "upstream"
        return path if path.is_dir() else None
    return upstream_dir()


#: The v6 fixture's two chunks: (compressed offset, uncompressed size, md5 given by the fixture README).
V6_CHUNKS = [
    (0, 16931, "4709cf8873e419ecedc7d43fdee4a75f"),
    (4828, 13400, "5442bc7dc9dc5f985c7594e23866ae6f"),
]


@pytest.fixture
def upstream_blob() -> bytes:
    root = _upstream_dir()
    if root is None:
        pytest.skip("upstream fixtures not found (expected ../shared/fixtures/upstream beside the repo)")
    blobs = root / "rafs-v6" / "blobs"
    return next(blobs.iterdir()).read_bytes()


def test_decompresses_chunks_upstream_wrote(upstream_blob: bytes) -> None:
    compressor = ZstdCompressor()
    for offset, size, md5 in V6_CHUNKS:
        # The frame's extent comes from zstd itself, not from our code.
        obj = zstandard.ZstdDecompressor().decompressobj()
        obj.decompress(upstream_blob[offset:])
        frame = upstream_blob[offset:len(upstream_blob) - len(obj.unused_data)]
        out = compressor.decompress(frame, size)
        assert hashlib.md5(out).hexdigest() == md5


def test_frames_are_shaped_like_upstreams(upstream_blob: bytes) -> None:
    """Same frame header as upstream's zstd::bulk::compress: content size recorded, no checksum."""
    for offset, size, _ in V6_CHUNKS:
        theirs = zstandard.get_frame_parameters(upstream_blob[offset:offset + 18])
        obj = zstandard.ZstdDecompressor().decompressobj()
        data = obj.decompress(upstream_blob[offset:])
        ours_frame = ZstdCompressor().compress(data)
        ours = zstandard.get_frame_parameters(ours_frame)
        assert ours.content_size == theirs.content_size == size
        assert ours.has_checksum == theirs.has_checksum is False
        assert ours.dict_id == theirs.dict_id == 0
        assert ours_frame[4] == upstream_blob[offset + 4]  # frame header descriptor byte


def test_frame_with_bigger_content_size_is_refused() -> None:
    """A frame claiming more bytes than the chunk record is an integrity error, not a big allocation."""
    frame = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(1 << 20))
    with pytest.raises(IntegrityError):
        ZstdCompressor().decompress(frame, 4096)
