"""The compact chunk indexes: the v6 reader's chunk lookup and the pipeline's blob-order index keep
the first record of a key, whatever the order of the bootstrap's chunk table."""

from __future__ import annotations

import random
from array import array

from nydus_core.rafs.v6 import ChunkLookup
from nydus_core.storage.chunk_order import _sorted_unique

NO_KEY = (1 << 64) - 1


def _dict_lookup(keys: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for pos, k in enumerate(keys):
        if k != NO_KEY:
            out.setdefault(k, pos)
    return out


def test_chunk_lookup_matches_a_first_wins_dict_in_any_order() -> None:
    rnd = random.Random(16)
    for sort in (True, False):
        keys = [rnd.randrange(1 << 40) for _ in range(2000)]
        keys += keys[:300]  # duplicates: the first record wins
        keys += [NO_KEY] * 5  # records no index can address
        if sort:
            keys.sort()
        else:
            rnd.shuffle(keys)
        lookup = ChunkLookup(array("Q", keys))
        want = _dict_lookup(keys)
        for k, pos in want.items():
            assert lookup.get(k) == pos
        assert lookup.get(NO_KEY) is None
        assert all(lookup.get(k) is None for k in (rnd.randrange(1 << 40) | 1 << 41 for _ in range(200)))


def test_blob_order_keeps_the_first_record_of_each_offset() -> None:
    rnd = random.Random(17)
    offsets = [rnd.randrange(1 << 30) for _ in range(1000)]
    offsets += offsets[:100]
    rnd.shuffle(offsets)
    keys, pos = _sorted_unique(array("Q", offsets), array("I", range(len(offsets))))
    first = {}
    for p, k in enumerate(offsets):
        first.setdefault(k, p)
    assert list(keys) == sorted(first)
    assert list(pos) == [first[k] for k in sorted(first)]
    # already strictly sorted: kept as is
    k2, p2 = _sorted_unique(array("Q", [1, 5, 9]), array("I", [7, 8, 9]))
    assert list(k2) == [1, 5, 9] and list(p2) == [7, 8, 9]
