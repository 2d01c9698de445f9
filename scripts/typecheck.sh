#!/usr/bin/env bash
# Type-check (mypy --strict; config in pyproject.toml [tool.mypy]) the core and every plugin package.
# Extra arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
# The snapshotter's gRPC modules are generated at build time, with their type stubs (*_pb2.pyi):
# make them again when an older generation without the stubs is lying around.
gen=plugins/snapshotter_containerd/nydus_snapshotter_containerd/_gen
if [ ! -f "$gen/containerd/services/snapshots/v1/snapshots_pb2.pyi" ]; then
    .venv/bin/python plugins/snapshotter_containerd/stubgen.py >/dev/null
fi
shopt -s nullglob
packages=(nydus_core plugins/*/nydus_* testkit/nydus_* testsupport/nydus_*)
exec .venv/bin/mypy "$@" "${packages[@]}"
