#!/usr/bin/env bash
# The main job, end to end, on the embedded default (local blobs, no network):
#   build a RAFS v6 image of a local tree, verify it, mount it with nydusd (lazy loading through the
#   localfs backend into a blob cache), read some files from the mount, show how much of the image
#   was fetched, unmount; then serve the same image with both drivers (--fs-driver fusedev and
#   erofs) and time a full read and a walk with each.
# Usage: bash scripts/demo.sh [SOURCE_DIR]   (default: this machine's Python standard library)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BIN=.venv/bin

SRC=${1:-$($BIN/python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')}
WORK=${DEMO_DIR:-/tmp/nydus-demo}
rm -rf "$WORK"
mkdir -p "$WORK/mnt"
echo "== source: $SRC ($(du -sh --exclude=site-packages "$SRC" | cut -f1))"

# A copy without site-packages, so the demo image is the same on every machine of this kind.
SRCCOPY="$WORK/src"
(cd "$SRC" && tar cf - --exclude=./site-packages .) | (mkdir -p "$SRCCOPY" && cd "$SRCCOPY" && tar xf -)

echo "== nydus-image create (RAFS v6, zstd, blake3)"
$BIN/nydus-image create "$SRCCOPY" -B "$WORK/image.boot" -D "$WORK/blobs" -J "$WORK/build.json"
echo "== nydus-image check (every chunk verified)"
$BIN/nydus-image check "$WORK/image.boot" -D "$WORK/blobs"

cat > "$WORK/nydusd.json" <<JSON
{
  "device": {
    "backend": {"type": "localfs", "config": {"dir": "$WORK/blobs"}},
    "cache": {"type": "blobcache", "config": {"work_dir": "$WORK/cache"}}
  },
  "mode": "direct",
  "digest_validate": true,
  "enable_xattr": true,
  "amplify_io": 1048576
}
JSON

echo "== nydusd: mounting at $WORK/mnt"
$BIN/nydusd --config "$WORK/nydusd.json" --bootstrap "$WORK/image.boot" --mountpoint "$WORK/mnt" \
  --apisock "$WORK/api.sock" --log-file "$WORK/nydusd.log" &
DAEMON=$!
cleanup() {
  if mountpoint -q "$WORK/mnt"; then
    $BIN/nydusctl --sock "$WORK/api.sock" exit >/dev/null 2>&1 || fusermount3 -u "$WORK/mnt" || true
  fi
  wait "$DAEMON" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do mountpoint -q "$WORK/mnt" && break; sleep 0.1; done
mountpoint -q "$WORK/mnt" || { echo "nydusd did not mount; see $WORK/nydusd.log" >&2; exit 1; }

echo "== reading through the mount (lazily)"
echo "entries: $(find "$WORK/mnt" | wc -l)"
for f in json/__init__.py email/message.py http/client.py; do
  if cmp -s "$WORK/mnt/$f" "$SRCCOPY/$f"; then echo "  $f: identical to the source"; else echo "  $f: DIFFERS" >&2; exit 1; fi
done

echo "== what was fetched"
$BIN/python - "$WORK" <<'PY'
import json, subprocess, sys
work = sys.argv[1]
backend = json.loads(subprocess.check_output(
    [".venv/bin/nydusctl", "--sock", f"{work}/api.sock", "--raw", "metrics", "backend"]))
build = json.load(open(f"{work}/build.json"))
fetched, size = backend["read_amount_total"], build["blob_size"]
print(f"fetched {fetched / 1e6:.2f} MB in {backend['read_count']} backend requests "
      f"of a {size / 1e6:.1f} MB image ({100 * fetched / size:.1f} %)")
PY

echo "== unmounting"
$BIN/nydusctl --sock "$WORK/api.sock" exit
wait "$DAEMON"
trap - EXIT
mountpoint -q "$WORK/mnt" && { echo "still mounted" >&2; exit 1; }

# Both drivers on the same image and blob cache: fusedev (every operation in nydusd) and erofs (the
# kernel's EROFS driver reads the bootstrap; nydusd serves blob data, or the kernel reads a blob's
# complete cache file directly). The first full read fills the blob cache; then each driver gets a
# fresh mount with the page cache dropped (root only) for a cold full read, a warm one and a walk.
secs() { local t0=$EPOCHREALTIME; bash -c "$1" >/dev/null; awk "BEGIN { print $EPOCHREALTIME - $t0 }"; }
drop() { if [ "$(id -u)" = 0 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi; }
serve() {  # serve DRIVER: mount, time, unmount
  $BIN/nydusd --config "$WORK/nydusd.json" --bootstrap "$WORK/image.boot" --mountpoint "$WORK/mnt" \
    --fs-driver "$1" --log-file "$WORK/nydusd-$1.log" 2>"$WORK/nydusd-$1.err" &
  local pid=$!
  for _ in $(seq 100); do mountpoint -q "$WORK/mnt" && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  if ! mountpoint -q "$WORK/mnt"; then
    printf "  %-8s  not available here: %s\n" "$1" "$(tail -1 "$WORK/nydusd-$1.err")"; wait $pid 2>/dev/null || true
    return
  fi
  drop; local cold warm walk
  cold=$(secs "tar -C '$WORK/mnt' -cf - . | wc -c"); warm=$(secs "tar -C '$WORK/mnt' -cf - . | wc -c")
  drop; walk=$(secs "find '$WORK/mnt' | wc -l")
  printf "  %-8s  full read cold %6.3f s   warm %6.3f s   find cold %6.3f s\n" "$1" "$cold" "$warm" "$walk"
  kill -TERM $pid; wait $pid || true
}
echo "== filling the blob cache with one full read (fusedev)"
$BIN/nydusd --config "$WORK/nydusd.json" --bootstrap "$WORK/image.boot" --mountpoint "$WORK/mnt" \
  --log-file "$WORK/nydusd.log" &
DAEMON=$!
for _ in $(seq 100); do mountpoint -q "$WORK/mnt" && break; sleep 0.1; done
tar -C "$WORK/mnt" -cf - . | wc -c >/dev/null
kill -TERM $DAEMON; wait $DAEMON || true
echo "== the same image with both drivers (blob cache filled, page cache dropped before cold runs)"
serve fusedev
serve erofs
mountpoint -q "$WORK/mnt" && { echo "still mounted" >&2; exit 1; }
echo "done: image in $WORK (image.boot, blobs/), cache in $WORK/cache"
