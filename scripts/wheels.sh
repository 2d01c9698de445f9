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

# The distribution names (as in wheel file names) of the workspace root and its members (the globs
# of [tool.uv.workspace] members), published ones only.
mapfile -t published < <(python3 - <<'PY'
import glob, re, tomllib
root = tomllib.load(open("pyproject.toml", "rb"))
dirs = ["."] + sorted(d for g in root["tool"]["uv"]["workspace"]["members"] for d in glob.glob(g))
for d in dirs:
    meta = tomllib.load(open(f"{d}/pyproject.toml", "rb"))["project"]
    if "Private :: Do Not Upload" not in meta.get("classifiers", []):
        print(re.sub(r"[-_.]+", "_", meta["name"]).lower())
PY
)
# One uv run builds every member (its builds overlap: ~3x faster than one uv run per project), into a
# staging directory; only the published wheels are kept.
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
"$UV" build --all-packages --wheel --quiet --out-dir "$STAGE"
rm -f "$OUT"/nydus_*.whl
for name in "${published[@]}"; do
  wheels=("$STAGE/$name"-*.whl)
  if [ ! -f "${wheels[0]}" ] || [ "${#wheels[@]}" -ne 1 ]; then
    echo "wheels: expected one wheel of $name, found: ${wheels[*]}" >&2
    exit 1
  fi
  mv "${wheels[0]}" "$OUT"/
done
echo "wheels: ${#published[@]} distributions built into $OUT"
