"""The one gzip reader: multi-member streams, CRC32/ISIZE/truncation checks, bounded output.

Corrupt streams are cross-checked with the system's ``gzip -t``: what it rejects, we reject.
"""

from __future__ import annotations

import gzip
import io
import itertools
import shutil
import struct
import subprocess
import zlib

import pytest
from nydus_testkit.samples import random_bytes

from nydus_core.errors import FormatError
from nydus_core.gzipstream import GzipError, GzipReader, decompress, is_gzip, open_maybe_gzip

DATA = random_bytes(200_000, 7) + b"compressible text\n" * 40_000


def _read_all(raw: bytes, step: int = 7777) -> tuple[bytes, GzipReader]:
    reader = GzipReader(io.BytesIO(raw), name="layer.tgz")
    parts = []
    while chunk := reader.read(step):
        assert len(chunk) <= step
        parts.append(chunk)
    return b"".join(parts), reader


def _member_with_header_extras(data: bytes) -> bytes:
    """A member with FEXTRA (a bgzip-style BC subfield), FNAME, FCOMMENT and FHCRC set."""
    extra = b"BC" + struct.pack("<HH", 2, 0)
    header = (b"\x1f\x8b\x08" + bytes([0x04 | 0x08 | 0x10 | 0x02]) + b"\0\0\0\0\0\xff"
              + struct.pack("<H", len(extra)) + extra + b"name.tar\0" + b"a comment\0")
    header += struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = comp.compress(data) + comp.flush()
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def _gzip_t_rejects(raw: bytes) -> bool:
    if shutil.which("gzip") is None:  # the cross-check needs the tool; our own checks still run
        return True
    return subprocess.run(["gzip", "-t"], input=raw, capture_output=True).returncode != 0  # 2: a warning


def test_members_one_after_the_other_give_all_the_data() -> None:
    cuts = [0, 1, 50_000, 50_001, 333_333, len(DATA)]
    raw = b"".join(gzip.compress(DATA[a:b], mtime=0) for a, b in itertools.pairwise(cuts))
    raw += _member_with_header_extras(b"tail")
    got, reader = _read_all(raw)
    assert got == DATA + b"tail"
    assert reader.members == 6 and reader.consumed == len(raw) and reader.produced == len(got)
    assert decompress(raw, name="x") == DATA + b"tail"
    assert gzip.decompress(raw) == got  # the stdlib agrees


def test_nul_padding_after_the_last_member_is_accepted() -> None:
    raw = gzip.compress(DATA) + b"\0" * 3000
    assert _read_all(raw)[0] == DATA


@pytest.mark.parametrize("case", ["crc", "isize", "middle", "truncated", "cut-trailer", "garbage-after",
                                  "garbage-after-padding", "header-crc", "second-member-crc"])
def test_corrupt_streams_are_one_line_errors_naming_stream_and_member(case: str) -> None:
    one = gzip.compress(DATA, mtime=0)
    raw = bytearray(one)
    member = 1
    if case == "crc":
        raw[-8] ^= 0x01
    elif case == "isize":
        raw[-1] ^= 0x01
    elif case == "middle":
        raw[len(raw) // 2] ^= 0x40
    elif case == "truncated":
        raw = raw[:len(raw) // 2]
    elif case == "cut-trailer":
        raw = raw[:-3]
    elif case == "garbage-after":
        raw += b"not gzip"
    elif case == "garbage-after-padding":
        raw += b"\0\0\0x"
    elif case == "header-crc":
        raw = bytearray(_member_with_header_extras(DATA[:1000]))
        raw[30] ^= 0x01  # a byte of the header's name field: the header CRC no longer matches
    elif case == "second-member-crc":
        raw = bytearray(gzip.compress(b"first", mtime=0)) + raw
        raw[-6] ^= 0x80
        member = 2
    assert _gzip_t_rejects(bytes(raw))
    with pytest.raises(GzipError) as info:
        _read_all(bytes(raw))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("layer.tgz: invalid gzip stream")
    if not case.startswith("garbage"):
        assert f"member {member} " in msg
    if case == "crc":
        assert "CRC32 mismatch" in msg
    if case == "isize":
        assert "ISIZE mismatch" in msg
    if case in ("truncated", "cut-trailer"):
        assert "truncated" in msg
    assert isinstance(info.value, FormatError)


@pytest.mark.parametrize("raw, what", [(b"", "empty stream"), (b"plain tar bytes", "bad magic"),
                                        (b"\x1f", "bad magic"), (b"\x1f\x8b", "truncated")])
def test_not_gzip_at_all(raw: bytes, what: str) -> None:
    with pytest.raises(GzipError, match=what):
        decompress(raw, name="x")


def test_output_is_bounded_per_read_and_by_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)  # 64 MiB from ~64 KiB
    reader = GzipReader(io.BytesIO(bomb), name="bomb")
    assert len(reader.read(4096)) == 4096
    assert reader.produced <= 2 << 20  # inflated ahead by one bounded block, not the whole stream
    with pytest.raises(GzipError, match="more than 1048576 bytes"):
        decompress(bomb, name="bomb", limit=1 << 20)
    assert decompress(gzip.compress(b"abc"), name="small", limit=3) == b"abc"


def test_open_maybe_gzip_sniffs_the_magic() -> None:
    stream, gz = open_maybe_gzip(io.BytesIO(gzip.compress(b"inside")), name="a")
    assert gz and stream.read() == b"inside"
    stream, gz = open_maybe_gzip(io.BytesIO(b"plain"), name="b")
    assert not gz and stream.read(2) == b"pl" and stream.read() == b"ain"
    assert is_gzip(b"\x1f\x8b\x08") and not is_gzip(b"\x1f")
