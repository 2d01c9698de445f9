"""The installed distribution's entry point is really wired: `nydus plugins` lists it."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite


class TestZstdEntryPoint(EntryPointSuite):
    entry_point = "compressor-zstd"
    provides = {"compressor": ["zstd"]}
    implementation = "nydus_compressor_zstd.compressor.ZstdCompressor"
