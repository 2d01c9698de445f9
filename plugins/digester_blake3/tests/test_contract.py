"""DigesterContract on blake3 (expected digests from the blake3 package and published vectors)."""

from __future__ import annotations

import pytest
from nydus_digester_blake3 import Blake3Digester
from nydus_testkit import DigesterContract


class TestBlake3(DigesterContract):
    @pytest.fixture
    def digester(self) -> Blake3Digester:
        return Blake3Digester()
