// Building blocks shared by the RoPE decoder architectures (Gemma, Llama, Qwen): RMSNorm, rotary position
// tables, grouped-query head expansion and attention masks. All float32, computed as transformers does.
#pragma once

#include <torch/torch.h>

#include "saetraj/model/rope.h"

namespace saetraj::model::ops {

// x * rsqrt(mean(x^2) + eps) * scale over the last dimension, in float32. Gemma passes scale = 1 + w,
// Llama passes w.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& scale, double eps);

// cos and sin tables [n, head_dim] for positions 0..n-1, rotate-half layout (each frequency twice).
// The inverse frequencies follow rope.type: "default", "linear" (all divided by factor), or "llama3" (long
// wavelengths divided by factor, short ones kept, a smooth blend in between).
struct RopeTables {
  torch::Tensor cos, sin;
};
RopeTables rope_tables(const RopeParams& rope, int64_t head_dim, int64_t n, const torch::Device& device);

// x [heads, n, head_dim] rotated: x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1).
torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& tables);

// [n_kv, n, hd] -> [n_heads, n, hd]: query head h reads key/value head h / (n_heads / n_kv).
torch::Tensor expand_kv(const torch::Tensor& kv, int64_t n_heads);

// True where key j is hidden from query q: j > q, and, when window > 0, q - j >= window. [n, n]
torch::Tensor attention_mask(int64_t n, int64_t window, const torch::Device& device);

}  // namespace saetraj::model::ops
