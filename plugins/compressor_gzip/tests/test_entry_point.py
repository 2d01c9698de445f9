"""The installed distribution's entry point is really wired: `nydus plugins` lists it."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite


class TestGzipEntryPoint(EntryPointSuite):
    entry_point = "compressor-gzip"
    provides = {"compressor": ["gzip"]}
    implementation = "nydus_compressor_gzip.compressor.GzipCompressor"
