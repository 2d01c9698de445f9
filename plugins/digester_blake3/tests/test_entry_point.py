"""The installed distribution's entry point is really wired: `nydus plugins` lists it."""

from __future__ import annotations

from nydus_testkit.entry_points import EntryPointSuite


class TestBlake3EntryPoint(EntryPointSuite):
    entry_point = "digester-blake3"
    provides = {"digester": ["blake3"]}
    implementation = "nydus_digester_blake3.digester.Blake3Digester"
