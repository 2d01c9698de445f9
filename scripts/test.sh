#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: lint, type check, then pytest with strict plugin
# loading.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NYDUS_STRICT_PLUGINS=1
# The tests build wheels and venvs with uv: the one setup.sh found or installed (.tools/bin/uv).
export PATH="$PWD/.tools/bin:$PATH"
.venv/bin/ruff check .
bash scripts/typecheck.sh
exec .venv/bin/pytest -q "$@"
