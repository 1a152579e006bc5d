// Top-k active features per row (SPEC 1.2): activation > 0, sorted by activation descending, ties by
// lower feature index; remaining slots padded with index -1 and value 0.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace saetraj::sweep {

// acts: [rows, d_sae] float32 contiguous. Writes rows x k entries into indices/values.
// Only active features compete: each row is scanned once, the active ones partially sorted.
void topk_active(const torch::Tensor& acts, int64_t k, int32_t* indices, float* values);

// The same selection straight from pre-activations, fusing the activation into the scan (one pass over
// [rows, d_sae] instead of four elementwise ones): with v = x W_enc + bias[f] (bias nullable), feature f is
// active when v > 0 and, when `threshold` is given (JumpReLU), v > threshold[f]. Returns false when a value
// is NaN or Inf.
bool topk_active_fused(const torch::Tensor& x_w_enc, const float* bias, const float* threshold, int64_t k,
                       int32_t* indices, float* values);

}  // namespace saetraj::sweep
