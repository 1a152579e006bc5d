// The MLP path of the sweep (issue 15 part 3, step 3): for each query q of a prompt (position q, the last
// position of the prefix of length q + 1), the MLP decomposition of sweep/mlp_decompose.h at that position and
// what the sweep file keeps of it.
//
// [NOTE] What is kept per (layer, query). The number of MLP steps (active transcoder features + bias [+ skip] +
// error, + 1) depends on the layer and the position and is not known when the file is created (its datasets are
// allocated early, SPEC 3's life cycle), so the step lists are not all written. Kept, each of fixed size:
//   steps                   int32        T + 1 (rows encoded: x_0 = resid_mid ... x_T = resid_post)
//   final list              int32/float  [k] the residual SAE's top-k of x_T (slot order), -1 = empty
//   per slot of that list   int32 [3]    first appearance step s (-1: in x_0's list already, or empty slot),
//                                        kind of the term added at s (0 feature, 1 bias, 2 skip, 3 error; -1),
//                                        transcoder feature of that term (-1 unless kind 0)
//                           float [1]    that feature's activation act_f (NaN unless kind 0)
// The residual SAE is the one the layer's attention path uses (NOTE The MLP path in output/sweep_file.h).
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "saetraj/sae/sae.h"
#include "saetraj/sae/transcoder.h"

namespace saetraj::sweep {

inline constexpr int64_t kMlpSlotInts = 3;

// One query. `mlp_in`, `resid_mid`, `resid_post` are the layer's [d] vectors at the position. Writes `steps`,
// `final_indices`/`final_values` [k], `slot_ints` [k * 3], `slot_activation` [k].
void mlp_query(const sae::Transcoder& transcoder, const sae::Sae& sae, const torch::Tensor& mlp_in,
               const torch::Tensor& resid_mid, const torch::Tensor& resid_post, int64_t k, int32_t* steps,
               int32_t* final_indices, float* final_values, int32_t* slot_ints, float* slot_activation);

}  // namespace saetraj::sweep
