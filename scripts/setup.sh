#!/usr/bin/env bash
# Set up a development machine (Debian 12, as root): system packages, uv, and the workspace venv.
# Idempotent: packages already installed are not installed again; the venv follows uv.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: pyfuse3 build (libfuse3-dev, pkg-config), FUSE tools, and the real components the
# tests and benchmarks talk to (registry, OCI tools, EROFS and squashfs tools, nginx, containerd and
# runc; containerd's API .proto files, from which the snapshotter's gRPC stubs are generated at build
# time; debootstrap for the cold-start benchmark's images).
SYSTEM_PACKAGES=(
  build-essential python3-dev pkg-config libfuse3-dev fuse3
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

# uv drives the workspace (root + plugins/*) from uv.lock.
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
export UV_LINK_MODE=copy
uv sync --all-packages --locked --quiet
echo "setup: ready (.venv)"
