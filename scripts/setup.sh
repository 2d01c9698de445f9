#!/usr/bin/env bash
# Set up a development machine (Debian 12, as root): system packages, uv, and the workspace venv.
# Idempotent: packages already installed are not installed again; the venv follows uv.lock.
# Needs only Debian's own python3 (no pip, externally managed is fine): uv, when it is not on PATH,
# goes into a private venv (.tools/uv, made with python3-venv), linked as .tools/bin/uv.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: pyfuse3 build (libfuse3-dev, pkg-config), python3-venv (the private uv below, and
# the venvs of the clean-install tests), FUSE tools, and the real components the
# tests and benchmarks talk to (registry, OCI tools, EROFS and squashfs tools, nginx, containerd and
# runc; containerd's API .proto files, from which the snapshotter's gRPC stubs are generated at build
# time; debootstrap for the cold-start benchmark's images).
SYSTEM_PACKAGES=(
  build-essential python3-dev python3-venv pkg-config libfuse3-dev fuse3
  docker-registry skopeo umoci erofs-utils squashfuse squashfs-tools nginx
  containerd runc golang-github-containerd-containerd-dev debootstrap
  util-linux iproute2 kmod tar
)

missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# uv drives the workspace (root + members) from uv.lock: the one on PATH, else a private one.
source scripts/uv.sh
ensure_uv
mkdir -p .tools/bin
if [ "$UV" = "$PWD/.tools/uv/bin/uv" ]; then ln -sfn ../uv/bin/uv .tools/bin/uv; else ln -sfn "$UV" .tools/bin/uv; fi
export UV_LINK_MODE=${UV_LINK_MODE:-copy}
# Bytecode compiled at install, as pip does (uv does not by default): without it every Python start
# (nydusd, nydus-image, nydusify) compiles its imports again, ~0.5 s on this machine, and never stops
# doing so where PYTHONDONTWRITEBYTECODE is set. UV_COMPILE_BYTECODE=0 skips it.
export UV_COMPILE_BYTECODE=${UV_COMPILE_BYTECODE:-1}
"$UV" sync --all-packages --locked --quiet
if [ "$UV_COMPILE_BYTECODE" != 0 ]; then  # the workspace's own packages are editable: not in site-packages
  .venv/bin/python -m compileall -q -j 0 nydus_core plugins testsupport >/dev/null
fi
echo "setup: ready (.venv)"
