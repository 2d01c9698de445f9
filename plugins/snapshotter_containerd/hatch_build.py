"""Hatch build hook: generate containerd's gRPC stubs into the package before it is packed.

The stubs are generated here only: the installed package never needs ``grpcio-tools``. A build
without containerd's API protos fails, saying what to install, rather than making a wheel that
cannot talk to containerd; so does a build whose stubs would refuse the declared grpcio/protobuf.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ContainerdStubsHook(BuildHookInterface):
    """Run ``stubgen.generate`` (loaded by path: it is not part of the package) on every build."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Generate the stubs and check them against the declared run-time dependencies."""
        root = Path(self.root)
        spec = importlib.util.spec_from_file_location("_nydus_stubgen", root / "stubgen.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        try:
            target = mod.generate(root)
        except mod.ProtoGenError as exc:
            message = f"nydus-snapshotter-containerd: cannot generate containerd's gRPC stubs: {exc}"
            raise RuntimeError(message) from None
        problems = mod.bound_problems(mod.generated_versions(target), self.metadata.core.dependencies)
        if problems:
            raise RuntimeError("nydus-snapshotter-containerd: " + "; ".join(problems)
                               + " (keep [build-system] grpcio-tools and the grpcio/protobuf bounds in step)")
