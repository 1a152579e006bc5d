// Top-k active features per row (SPEC 1.2): activation > 0, sorted by activation descending, ties by
// lower feature index; remaining slots padded with index -1 and value 0.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace saetraj::sweep {

// acts: [rows, d_sae] float32 contiguous. Writes rows x k entries into indices/values.
// Only active features compete: each row is scanned once, the active ones partially sorted.
void topk_active(const torch::Tensor& acts, int64_t k, int32_t* indices, float* values);

}  // namespace saetraj::sweep
