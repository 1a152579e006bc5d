#!/usr/bin/env bash
# The prepared GPU check: one command on a machine with an NVIDIA GPU, from the repository root.
#
#   bash tests/gpu/device_check.sh [REPORT]        (REPORT default: $OUT/device_check_report.txt, else
#                                                   build-gpu/device_check_report.txt)
#
# 1. builds tests/gpu (LibTorch from the machine's python3 torch, plus the CUDA toolkit: nothing else);
# 2. runs the GPU path against the CPU kernels for every SAE kind and both methods, and checks that its
#    rows do not depend on the query split or the run (saetraj_gpu_check agreement);
# 3. runs the GPU benchmark: 26 Gemma-2-2b-shaped layers with 65k JumpReLU SAEs, N = 24, 128, 256, direct
#    and factored, share of the measured float32 product rate, peak GPU memory, the original code's method;
# 4. where the machine also has MPI and parallel HDF5 development files (mpicxx and h5pcc, or pkg-config's
#    hdf5-openmpi), builds the full saetraj and runs the NCCL round trip and a 2-rank sweep with both ranks
#    on one GPU, compared with the 1-rank file; elsewhere it says that this part was skipped and why.
# Everything goes to the report file too. Meant to finish within 8 minutes on one H200.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPORT=${1:-${OUT:-build-gpu}/device_check_report.txt}
mkdir -p build-gpu "$(dirname "$REPORT")"
: > "$REPORT"
say() { echo "$@" | tee -a "$REPORT"; }
run() { "$@" 2>&1 | tee -a "$REPORT"; return "${PIPESTATUS[0]}"; }
status=0
started=$(date +%s)

say "== saetraj device check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') =="
run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
PY=${PYTHON:-python3}
TORCH_PREFIX=$($PY -c 'import torch, torch.utils; print(torch.utils.cmake_prefix_path)') || {
  say "no python3 with torch here: cannot build the GPU check"; exit 1; }
say "torch $($PY -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
CUDA_ROOT=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)

say "== build (tests/gpu: LibTorch and CUDA only) =="
if ! run cmake -S tests/gpu -B build-gpu "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
      -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT" -DCUDAToolkit_ROOT="$CUDA_ROOT" -DCMAKE_CUDA_COMPILER="$NVCC" > /dev/null ||
   ! run cmake --build build-gpu -j"$(nproc)"; then
  say "build: FAILED"; exit 1
fi
say "build: $(( $(date +%s) - started )) s"

say "== CUDA vs CPU agreement, determinism =="
run build-gpu/saetraj_gpu_check agreement || status=1

say "== GPU benchmark =="
run build-gpu/saetraj_gpu_check bench 24 128 256 || status=1

say "== NCCL round trip and 2-rank sweep on one GPU =="
if command -v mpicxx > /dev/null && { command -v h5pcc > /dev/null || pkg-config --exists hdf5-openmpi 2> /dev/null; }; then
  if run cmake -S . -B build-gpu/full -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
         -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT" -DSAETRAJ_TESTS=OFF > /dev/null &&
     run cmake --build build-gpu/full -j"$(nproc)" --target saetraj saetraj_nccl_roundtrip; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    run mpirun -n 2 build-gpu/full/saetraj_nccl_roundtrip || status=1
    W=build-gpu/sweep && rm -rf $W && mkdir -p $W
    run build-gpu/full/saetraj synth --out $W/fx > /dev/null || status=1
    common=(sweep --model $W/fx/model --sae "$W/fx/saes/layer_{layer}" --device cuda --no-graphs --overwrite
            --prompt "The final correct answer: Max, Mark and Smith are in the empty dark room. Smith left. Mark gave flashlight to"
            --prompt "A second prompt, a little longer than the first, so that ranks split queries as well as layers.")
    run build-gpu/full/saetraj "${common[@]}" --out $W/one.h5 || status=1
    run mpirun -n 2 build-gpu/full/saetraj "${common[@]}" --out $W/two.h5 || status=1
    if $PY tests/mpi/compare_sweeps.py $W/one.h5 $W/two.h5; then
      say "2-rank sweep on one GPU (NCCL exchange): identical to 1 rank"
    else
      say "2-rank sweep on one GPU: DIFFERS from 1 rank"; status=1
    fi
  else
    say "full build: FAILED"; status=1
  fi
else
  say "skipped: this machine has no MPI or parallel HDF5 development files (mpicxx, h5pcc / hdf5-openmpi);"
  say "         the NCCL exchange and the multi-rank GPU sweep need a cluster node with them"
fi

say "== done in $(( $(date +%s) - started )) s: $([ $status -eq 0 ] && echo passed || echo FAILED) =="
say "report: $REPORT"
exit $status
