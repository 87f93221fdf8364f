#!/usr/bin/env bash
# Idempotent setup: npm dependencies, then a WebGPU adapter (Mesa lavapipe) when Dawn finds none.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/dawngrad-xdg}"
mkdir -p "$XDG_RUNTIME_DIR"

if [ ! -d node_modules/webgpu ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[setup] installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

if node scripts/probe-adapter.mjs >/dev/null 2>&1; then
  exit 0
fi

echo "[setup] Dawn found no WebGPU adapter; installing Mesa lavapipe (Vulkan software driver) from bookworm-backports"
if [ "$(id -u)" != "0" ]; then
  echo "[setup] cannot install: not root. As root run: scripts/setup.sh — or use the CPU backend: DAWNGRAD_DEVICE=cpu" >&2
  exit 1
fi
if ! grep -qs 'bookworm' /etc/os-release; then
  echo "[setup] cannot install automatically: this is not Debian 12 (bookworm). Install Mesa >= 23 with lavapipe (mesa-vulkan-drivers) yourself, or use DAWNGRAD_DEVICE=cpu" >&2
  exit 1
fi
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  mirror=$(grep -rhs '^URIs:' /etc/apt/sources.list.d/debian.sources | head -1 | awk '{print $2}')
  mirror=${mirror:-http://deb.debian.org/debian}
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" \
    > /etc/apt/sources.list.d/bookworm-backports.sources
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
if ! node scripts/probe-adapter.mjs; then
  echo "[setup] lavapipe installed but Dawn still finds no adapter; use DAWNGRAD_DEVICE=cpu" >&2
  exit 1
fi
