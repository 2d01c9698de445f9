"""Hatch build hook: generate containerd's gRPC stubs into the package before it is packed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ContainerdStubsHook(BuildHookInterface):
    """Run :func:`nydus_snapshotter_containerd.gen.generate` (loaded by path) on every build."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        gen_py = root / "nydus_snapshotter_containerd" / "gen.py"
        spec = importlib.util.spec_from_file_location("_nydus_gen", gen_py)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        try:
            mod.generate(root)
        except mod.ProtoGenError as exc:
            # Still installable: the first use then says what is missing (api.ProtoUnavailableError).
            self.app.display_warning(f"containerd stubs not generated: {exc}")
