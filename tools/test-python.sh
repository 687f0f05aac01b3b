#!/usr/bin/env bash
# The Python package's tests: a venv outside the clone, the README's one install command
# (`pip install ./crates/roformer-py`; pip fetches maturin as the build backend), then pytest
# against the `roformer` binary built from the same tree (ROFORMER_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
# Shared with .ci/run and the README's commands: compiled dependencies are reused.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/roformer-target}"
VENV="${ROFORMER_PY_VENV:-$HOME/.cache/roformer-py-venv}"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
"$VENV/bin/python" -m pip install --quiet numpy pytest
# Always rebuilds the wheel from this tree (cargo's cache makes an unchanged tree quick).
"$VENV/bin/python" -m pip install --quiet ./crates/roformer-py

cargo build --release -p roformer-cli --quiet
export ROFORMER_BIN="$CARGO_TARGET_DIR/release/roformer"

# From outside the source tree, so `import roformer` is the installed package; no cache
# folder is written into the tree.
cd /
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/crates/roformer-py/tests"
