#!/usr/bin/env bash
# Type-check (mypy --strict; config in pyproject.toml [tool.mypy]) the core and every plugin package.
# Extra arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
packages=(nydus_core plugins/*/nydus_* testkit/nydus_* testsupport/nydus_*)
exec .venv/bin/mypy "$@" "${packages[@]}"
