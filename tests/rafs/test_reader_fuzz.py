"""Bounded fuzzing of both upstream bootstraps: random mutations never escape as non-Nydus errors.

Fixed seed; each case opens the mutated bootstrap, walks the whole image, reads xattrs, links and
chunk records, and (all v6 cases, every 8th v5 case) reads file data from the real blob with digest
validation. A case must end within a few seconds.
"""

from __future__ import annotations

import random

import pytest
from nydus_testsupport.fixtures import require_upstream
from nydus_testsupport.image_walk import exercise_image
from nydus_testsupport.timeouts import time_limit

from nydus_core.errors import NydusError
from nydus_core.rafs.reader import open_bootstrap_bytes
from nydus_core.tools.chunkreader import BlobDirReader

ITERATIONS = 1000
EXTREMES = (0, 1, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 40, 1 << 63, (1 << 64) - 1)


def mutate(rng: random.Random, data: bytes, structural: list[int]) -> bytes:
    """Return ``data`` with random bytes changed, a field set to an extreme value, or truncated."""
    b = bytearray(data)
    roll = rng.random()
    if roll < 0.4:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif roll < 0.9:
        off = rng.choice(structural) + rng.choice((0, 0, 0, 2, 4))
        width = rng.choice((1, 2, 4, 8))
        value = rng.choice((*EXTREMES, rng.getrandbits(32), rng.getrandbits(16))) & ((1 << 8 * width) - 1)
        b[off:off + width] = value.to_bytes(width, "little")[:max(0, len(b) - off)]
    else:
        del b[rng.randrange(len(b)):]
    return bytes(b)


@pytest.mark.parametrize(("which", "boot", "seed"), [
    ("rafs-v5", "sha256-nocompress-repeatable", 5005),
    ("rafs-v6", "rafs-v6-2.2.boot", 6006),
])
def test_random_mutations_raise_only_nydus_errors(which, boot, seed):
    d = require_upstream() / which
    data = (d / boot).read_bytes()
    # Mutate where the structure is: every non-zero 32-bit word.
    structural = [i for i in range(0, len(data), 4) if any(data[i:i + 4])]
    rng = random.Random(seed)
    opened = errors = 0
    with BlobDirReader(d / "blobs") as reader:
        for i in range(ITERATIONS):
            case = mutate(rng, data, structural)
            try:
                with time_limit(5):
                    image = open_bootstrap_bytes(case, f"case-{i}")
                    opened += 1
                    exercise_image(image, reader if which == "rafs-v6" or i % 8 == 0 else None)
            except NydusError:
                errors += 1
    # The fuzzing reached past the superblock checks, and found plenty to reject.
    assert opened > ITERATIONS // 4
    assert errors > ITERATIONS // 10
