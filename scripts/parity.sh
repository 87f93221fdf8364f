#!/usr/bin/env bash
# npm run parity: dawngrad against transformers, both directions (examples/hf_parity.py describes the steps).
# Needs Python 3 with torch, transformers and tokenizers: PARITY_PYTHON names an interpreter that has them;
# otherwise a virtual environment in .venv-parity/ is created and they are installed there with pip.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${1:-out/parity}"
VENV=.venv-parity
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/dawngrad-xdg}"
# Quiet and offline: everything is built locally, nothing is fetched from a hub.
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error
mkdir -p "$XDG_RUNTIME_DIR"

has_packages() { "$1" -c 'import torch, transformers, tokenizers' >/dev/null 2>&1; }

PY="${PARITY_PYTHON:-}"
if [ -n "$PY" ]; then
  has_packages "$PY" || { echo "[parity] PARITY_PYTHON=$PY lacks torch, transformers or tokenizers" >&2; exit 1; }
elif [ -x "$VENV/bin/python" ] && has_packages "$VENV/bin/python"; then
  PY="$VENV/bin/python"
else
  command -v python3 >/dev/null || { echo "[parity] python3 not found: install Python 3.9+ or set PARITY_PYTHON" >&2; exit 1; }
  echo "[parity] creating $VENV and installing torch, transformers, tokenizers, safetensors with pip"
  python3 -m venv "$VENV" || { echo "[parity] python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
  # Short timeouts and no retries: without access to the Python package index this fails in seconds.
  if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check --timeout 15 --retries 0 torch transformers tokenizers safetensors; then
    rm -rf "$VENV"
    echo "[parity] could not install torch/transformers with pip (no access to the Python package index?)." >&2
    echo "[parity] Install them into a Python of your own and run: PARITY_PYTHON=/path/to/python npm run parity" >&2
    exit 1
  fi
  PY="$VENV/bin/python"
fi

rm -rf "$ROOT"
"$PY" examples/hf_parity.py make "$ROOT"
npx tsx examples/hf-parity.ts "$ROOT"
"$PY" examples/hf_parity.py check "$ROOT"
echo "[parity] all cases within 1e-4, token ids equal"
