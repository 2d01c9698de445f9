"""CompressorContract on gzip, zran decoding from resume points, and indexing of gzip layers."""

from __future__ import annotations

import gzip
import io
import random
import subprocess
import zlib

import pytest
from nydus_compressor_gzip import GzipCompressor
from nydus_testkit import CompressorContract

from nydus_core.errors import IntegrityError
from nydus_core.interfaces import ResumePoint


class TestGzip(CompressorContract):
    @pytest.fixture
    def compressor(self) -> GzipCompressor:
        return GzipCompressor()


def _text(n: int, seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghij \n") for _ in range(rnd.randint(2, 9))) for _ in range(400)]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" "
    return bytes(out[:n])


def _layer() -> tuple[bytes, bytes]:
    """Text, incompressible bytes and zeros in three gzip members of different levels (stored
    blocks included): the uncompressed stream and the gzip file."""
    data = _text(1_500_000) + random.Random(2).randbytes(200_000) + bytes(300_000) + _text(400_000, 3)
    cuts = [0, 900_000, 900_001, 1_700_000, len(data)]
    levels = [6, 1, 0, 9]
    gz = b"".join(gzip.compress(data[a:b], compresslevel=lv, mtime=0)
                  for a, b, lv in zip(cuts, cuts[1:], levels, strict=False))
    return data, gz


def _index(gz: bytes) -> tuple[bytes, list[ResumePoint], list[tuple[int, int]]]:
    stream = GzipCompressor().open_indexed(io.BytesIO(gz))
    out = bytearray()
    while piece := stream.read(10240):
        out += piece
    return bytes(out), stream.take_points(), stream.take_progress()


def test_indexing_reads_every_member() -> None:
    data, gz = _layer()
    out, points, progress = _index(gz)
    assert out == data
    assert [p.out_offset for p in points] == sorted(p.out_offset for p in points)
    assert {p.bits for p in points} - {0}, "no point inside a byte: priming is not exercised"
    assert progress[-1][0] == len(data) and len(gz) - 8 <= progress[-1][1] <= len(gz)
    member_starts = [p for p in points if not p.window]
    assert [p.out_offset for p in member_starts] == [0, 900_000, 900_001, 1_700_000]


def test_decoding_from_every_point_matches_the_stream() -> None:
    data, gz = _layer()
    _, points, _ = _index(gz)
    rnd = random.Random(5)
    c = GzipCompressor()
    for p in points:
        for skip, size in ((0, 1), (rnd.randrange(0, 70_000), rnd.randrange(1, 400_000))):
            size = min(size, len(data) - p.out_offset - skip)
            if size <= 0:
                continue
            assert c.decompress_from(gz[p.in_offset:], p, skip, size) == \
                data[p.out_offset + skip:p.out_offset + skip + size]


def test_decoding_crosses_member_boundaries() -> None:
    data, gz = _layer()
    _, points, _ = _index(gz)
    first = points[0]
    assert GzipCompressor().decompress_from(gz[first.in_offset:], first, 0, len(data)) == data


def test_points_from_the_gzip_tool() -> None:
    """A layer written by gzip(1) (file name in the header) indexes and decodes the same way."""
    data = _text(700_000, 9)
    gz = subprocess.run(["gzip", "-c", "-9"], input=data, capture_output=True, check=True).stdout
    out, points, _ = _index(gz)
    assert out == data
    for p in points:
        assert GzipCompressor().decompress_from(gz[p.in_offset:], p, 0, 1000) == \
            data[p.out_offset:p.out_offset + 1000]


def test_short_input_is_an_integrity_error() -> None:
    _data, gz = _layer()
    _, points, _ = _index(gz)
    p = points[3]
    with pytest.raises(IntegrityError):
        GzipCompressor().decompress_from(gz[p.in_offset:p.in_offset + 100], p, 0, 500_000)


def test_corrupt_data_gives_an_error_or_other_bytes() -> None:
    """A flipped byte gives an error or different bytes (what digest validation then catches)."""
    data, gz = _layer()
    _, points, _ = _index(gz)
    p = points[2]
    bad = bytearray(gz[p.in_offset:p.in_offset + 200_000])
    bad[500] ^= 0x55
    try:
        out = GzipCompressor().decompress_from(bytes(bad), p, 0, 100_000)
    except IntegrityError:
        return
    assert out != data[p.out_offset:p.out_offset + 100_000]


@pytest.mark.parametrize("damage", ["crc", "isize", "truncated", "garbage"])
def test_bad_layers_are_refused(damage: str) -> None:
    _data, gz = _layer()
    bad = bytearray(gz)
    if damage == "crc":
        bad[-8] ^= 1
    elif damage == "isize":
        bad[-1] ^= 1
    elif damage == "truncated":
        del bad[-100:]
    else:
        bad += b"PK\x03\x04 not gzip"
    stream = GzipCompressor().open_indexed(io.BytesIO(bytes(bad)))
    with pytest.raises(IntegrityError, match="gzip member"):
        while stream.read(1 << 20):
            pass


def test_zero_padding_after_the_last_member_is_accepted() -> None:
    data, gz = _layer()
    out, _, _ = _index(gz + bytes(512))
    assert out == data


def test_plain_gzip_chunks_round_trip_with_zlib() -> None:
    packed = GzipCompressor().compress(b"hello" * 1000)
    assert zlib.decompress(packed, 31) == b"hello" * 1000
    with pytest.raises(IntegrityError):
        GzipCompressor().decompress(packed, 4999)
