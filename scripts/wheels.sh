#!/usr/bin/env bash
# Build the wheel of every published distribution into dist/ (or OUT_DIR): nydus-core, each plugin,
# the nydus-py meta-distribution and every other workspace member, except those marked unpublished
# with the "Private :: Do Not Upload" classifier (the test support package), which PyPI refuses.
# Usage: bash scripts/wheels.sh [OUT_DIR]      (then: pip install --find-links dist/ nydus-py)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv.sh
ensure_uv
OUT=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)

# The workspace root and its members (the globs of [tool.uv.workspace] members), published ones only.
mapfile -t projects < <(python3 - <<'PY'
import glob, tomllib
root = tomllib.load(open("pyproject.toml", "rb"))
dirs = ["."] + sorted(d for g in root["tool"]["uv"]["workspace"]["members"] for d in glob.glob(g))
for d in dirs:
    meta = tomllib.load(open(f"{d}/pyproject.toml", "rb"))["project"]
    if "Private :: Do Not Upload" not in meta.get("classifiers", []):
        print(d)
PY
)
rm -f "$OUT"/nydus_*.whl
for project in "${projects[@]}"; do
  "$UV" build --wheel --quiet --out-dir "$OUT" "$project"
done
echo "wheels: ${#projects[@]} distributions built into $OUT"
