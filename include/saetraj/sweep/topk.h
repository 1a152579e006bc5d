// Top-k active features per row (SPEC 1.2): activation > 0, sorted by activation descending, ties by
// lower feature index; remaining slots padded with index -1 and value 0.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace saetraj::sweep {

// (activation, feature index) of an active feature.
using Candidate = std::pair<float, int32_t>;

// Ranks candidates (activation descending, ties by lower index), writes the best min(keep, k) into
// out_i/out_v and pads the k slots with -1/0. Reorders `candidates`.
void write_ranked(std::vector<Candidate>& candidates, int64_t keep, int64_t k, int32_t* out_i, float* out_v);

// Drops all but the `keep` best candidates (in no particular order): bounds a row's candidate list while
// features are still being collected block by block; the ranking is exact because the order is total.
void keep_best(std::vector<Candidate>& candidates, int64_t keep);

// acts: [rows, d_sae] float32 contiguous. Writes rows x k entries into indices/values.
// Only active features compete: each row is scanned once, the active ones partially sorted.
void topk_active(const torch::Tensor& acts, int64_t k, int32_t* indices, float* values);

// The same selection straight from pre-activations, fusing the activation into the scan (one pass over
// [rows, d_sae] instead of four elementwise ones): with v = x W_enc + bias[f] (bias nullable), feature f is
// active when v > 0 and, when `threshold` is given (JumpReLU), v > threshold[f]. At most `keep` (<= k)
// features are kept per row: a TopK SAE passes its own k, since its activation keeps the topk_k largest
// pre-activations and zeroes the rest (ties at the cut are broken by lower index, where torch.topk picks
// arbitrarily). Returns false when a value is NaN or Inf.
bool topk_active_fused(const torch::Tensor& x_w_enc, const float* bias, const float* threshold, int64_t keep,
                       int64_t k, int32_t* indices, float* values);

// The same selection in LibTorch ops, for the GPU path (topk_cuda.cpp; runs on any device): `pre` holds
// pre-activations with b_enc added [rows, d_sae] float32 and is overwritten (inactive entries zeroed);
// `threshold` is JumpReLU's [d_sae] or undefined. Returns int32 indices and float32 values [rows, k] on
// pre's device, ranked and padded exactly as above (ties at the cut of `keep` go to the lower indices,
// whatever order torch::topk returns them in); `finite` is false when some pre-activation is NaN or Inf.
struct TopkTensors {
  torch::Tensor indices, values;
  bool finite = true;
};
TopkTensors topk_active_tensors(torch::Tensor& pre, const torch::Tensor& threshold, int64_t keep, int64_t k);
// Copies the [rows, k] lists into host tables of rows x k entries.
void copy_lists_to_host(const TopkTensors& lists, int32_t* indices, float* values);

}  // namespace saetraj::sweep
