// `saetraj bench --device cuda`: the evolution tables of a Gemma-2-2b-shaped model (26 layers of 65k-wide
// JumpReLU SAEs on random weights) on one GPU, per prompt length: the direct and the factored method, the
// share of the GPU's measured float32 product rate, peak GPU memory, and the original code's method on the
// same GPU. Also built into tests/gpu's standalone check, which needs LibTorch alone.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "saetraj/sae/sae.h"

namespace saetraj::cli {

struct GpuBenchOptions {
  int64_t d_model = 2304, heads = 8, d_sae = 65536, k = 400, chunk_rows = 2048;
  int layers = 26;
  std::vector<int64_t> tokens = {24, 128, 256};
  bool baseline = true;   // the original code's method, at the first prompt length
  int device = 0;
};

// The benchmarks' SAE: JumpReLU on random weights with about 100 active features per row on the benchmarks'
// random residuals, like Gemma Scope's canonical L0; no b_dec subtraction. On `options`' device.
sae::Sae bench_sae(int64_t d_model, int64_t d_sae, const torch::TensorOptions& options = {});

// Prints the table; returns 0.
int bench_gpu(const GpuBenchOptions& o);

}  // namespace saetraj::cli
