#!/usr/bin/env bash
# The Python package's tests: a venv outside the clone, the README's one install command
# (`pip install ./crates/roformer-py`; pip fetches maturin as the build backend), then pytest
# against the `roformer` binary built from the same tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/roformer-target}"
VENV="${ROFORMER_PY_VENV:-$HOME/.cache/roformer-py-venv}"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet numpy pytest
"$VENV/bin/pip" install --quiet ./crates/roformer-py

cargo build --release -p roformer-cli --quiet
export ROFORMER_BIN="$CARGO_TARGET_DIR/release/roformer"
# From outside the source tree, so `import roformer` is the installed package.
cd /
"$VENV/bin/python" -m pytest -q "$OLDPWD/crates/roformer-py/tests"
