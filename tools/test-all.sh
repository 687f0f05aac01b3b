#!/usr/bin/env bash
# Every test, as the README's test command and CI (.ci/run) run them: formatting, the Rust
# workspace and its lints, the Python package, and a type-check of the CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
# Reuse compiled dependencies between CI runs (a cold build also works, just slower).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/roformer-target}"
export CARGO_TERM_COLOR=never

# System packages and a Python venv (outside the clone) for the dataset builder's test.
bash tools/install-dataset-deps.sh

cargo fmt --all --check
(cd crates/roformer-py && cargo fmt --check)
cargo test --workspace
cargo clippy --workspace --all-targets -- -D warnings

# The Python package: installed into a venv outside the clone with the README's command, pytest.
bash tools/test-python.sh

# The CUDA backend must keep compiling, though CI has no GPU (nvcc comes from PyPI wheels).
bash tools/check-cuda.sh
