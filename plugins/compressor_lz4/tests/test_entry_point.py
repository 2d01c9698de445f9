"""The installed distribution's entry point is really wired: `nydus plugins` lists it."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite


class TestLz4EntryPoint(EntryPointSuite):
    entry_point = "compressor-lz4"
    provides = {"compressor": ["lz4_block"]}
    implementation = "nydus_compressor_lz4.compressor.Lz4BlockCompressor"
