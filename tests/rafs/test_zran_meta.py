"""ZRAN blob.meta: upstream's own zran fixture parses with the counts rafs-format.md §6.8 states."""

from __future__ import annotations

import dataclasses

import pytest
from nydus_testsupport.fixtures import require_upstream

from nydus_core.errors import FormatError
from nydus_core.rafs.blobmeta import decode_blob_meta, parse_cached_blob_meta
from nydus_core.rafs.constants import BlobFeatures
from nydus_core.rafs.zran import ZRAN_CONTEXT_SIZE, pack_zran_area

MiB = 1 << 20


@pytest.fixture(scope="module")
def fixture_meta() -> bytes:
    d = require_upstream() / "zran"
    return next(d.glob("*.blob.meta")).read_bytes()


def test_upstream_fixture_counts(fixture_meta: bytes) -> None:
    header, records, table = parse_cached_blob_meta(fixture_meta)
    assert len(fixture_meta) == 667648
    assert header.features == 0x0F
    assert header.features & BlobFeatures.ZRAN and header.features & BlobFeatures.CHUNK_INFO_V2
    assert (header.ci_entries, header.ci_uncompressed_size) == (163, 0xA1290)
    assert (header.zran_offset, header.zran_size, header.zran_count) == (0xF48, 0xA0348, 21)
    assert table is not None
    assert len(records) == 163 and len(table.contexts) == 21
    assert len(table.dictionaries) == 0xA0348 - 21 * ZRAN_CONTEXT_SIZE == 655360
    assert max(r.uncompressed_offset + r.uncompressed_size for r in records) <= 0x16C6000
    assert 0x16C6000 - max(r.uncompressed_offset + r.uncompressed_size for r in records) < 4096


def test_upstream_fixture_invariants(fixture_meta: bytes) -> None:
    """The §6.8 rules hold for every chunk and context of upstream's table."""
    _h, records, table = parse_cached_blob_meta(fixture_meta)
    assert table is not None
    first = table.contexts[0]
    assert (first.in_offset, first.out_offset, first.dict_size, first.ctx_bits) == (10, 0, 0, 0)
    assert sorted({c.ctx_bits for c in table.contexts}) == [0, 2, 3, 5, 6, 7]
    assert sum(c.dict_size for c in table.contexts) == len(table.dictionaries)
    assert max(c.out_len for c in table.contexts) == 3_201_740
    last = -1
    for r in records:
        assert r.is_compressed and r.zran_context is not None
        ctx = table.contexts[r.zran_context]
        assert r.zran_context >= last
        last = r.zran_context
        assert (ctx.out_offset + r.zran_offset) % 512 == 0
        assert r.zran_offset + r.uncompressed_size <= ctx.out_len
        assert ctx.in_offset <= r.compressed_offset
        assert r.compressed_offset + r.compressed_size <= ctx.in_offset + ctx.in_len
        assert r.uncompressed_offset % 4096 == 0 and r.uncompressed_size <= MiB
    # every context's resume point carries its own dictionary
    point = table.resume_point(16)
    assert (point.bits, point.byte, len(point.window)) == (7, 216, 32768)


def test_broken_zran_area_is_a_format_error(fixture_meta: bytes) -> None:
    header, _records, _table = parse_cached_blob_meta(fixture_meta)
    data = fixture_meta[:header.ci_uncompressed_size]
    for bad in (dataclasses.replace(header, zran_count=164),
                dataclasses.replace(header, zran_offset=header.zran_offset + 24),
                dataclasses.replace(header, zran_size=header.zran_size - 8)):
        plain = dataclasses.replace(bad, ci_compressor=0, ci_compressed_size=len(data))
        with pytest.raises(FormatError):
            decode_blob_meta(data, plain)


def test_context_records_round_trip(fixture_meta: bytes) -> None:
    header, _records, table = parse_cached_blob_meta(fixture_meta)
    assert table is not None
    dicts = [table.window(i) for i in range(len(table.contexts))]
    area = pack_zran_area(table.contexts, dicts)
    z = header.zran_offset
    assert area == fixture_meta[z:z + header.zran_size]
