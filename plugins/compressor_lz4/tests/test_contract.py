"""CompressorContract on lz4_block, plus the raw block format upstream uses (no frame, no size prefix)."""

from __future__ import annotations

import lz4.block
import lz4.frame
import pytest
from nydus_compressor_lz4 import Lz4BlockCompressor
from nydus_testkit import CompressorContract
from nydus_testkit.samples import payload

from nydus_core.errors import IntegrityError


class TestLz4Block(CompressorContract):
    @pytest.fixture
    def compressor(self) -> Lz4BlockCompressor:
        return Lz4BlockCompressor()


def test_raw_block_by_hand() -> None:
    """LZ4 block format: a token (literal count << 4), then the literals; the last sequence has no match."""
    assert Lz4BlockCompressor().compress(b"abc") == b"\x30abc"
    assert Lz4BlockCompressor().decompress(b"\x30abc", 3) == b"abc"
    # 15+ literals: token nibble 15, then an extra length byte (20 - 15 = 5).
    assert Lz4BlockCompressor().decompress(b"\xf0\x05" + b"x" * 20, 20) == b"x" * 20


def test_no_size_prefix() -> None:
    data = payload(100_000, seed=1)
    ours = Lz4BlockCompressor().compress(data)
    assert ours == lz4.block.compress(data, mode="default", store_size=False)
    assert lz4.block.compress(data, store_size=True)[4:] == ours  # the prefixed form minus its 4 bytes


def test_frames_and_prefixed_blocks_are_not_accepted() -> None:
    data = payload(50_000, seed=2)
    for wrong in (lz4.frame.compress(data), lz4.block.compress(data, store_size=True)):
        with pytest.raises(IntegrityError):
            Lz4BlockCompressor().decompress(wrong, len(data))
