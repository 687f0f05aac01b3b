#!/usr/bin/env bash
# Type-checks the CUDA build (`--features cuda`) without a GPU: nvcc and the CUDA headers come
# from PyPI wheels pinned to the 13.0 series (cudarc 0.19 rejects newer nvcc, and a newer nvvm
# emits PTX that the 13.0 ptxas refuses). The venv lives outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ROFORMER_CUDA_VENV:-$HOME/.cache/roformer-cuda-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q \
  "nvidia-cuda-nvcc==13.0.88" "nvidia-nvvm==13.0.*" "nvidia-cuda-runtime==13.0.*" \
  "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*"
cuda_root="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
export CUDA_HOME="$cuda_root" CUDA_PATH="$cuda_root" PATH="$cuda_root/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
nvcc --version | tail -n 2
cargo check --workspace --features roformer/cuda,roformer-cli/cuda
echo "CUDA build type-checks"
