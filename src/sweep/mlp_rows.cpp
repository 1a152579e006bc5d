#include "saetraj/sweep/mlp_rows.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "saetraj/sweep/mlp_decompose.h"

namespace saetraj::sweep {

void mlp_query(const sae::Transcoder& transcoder, const sae::Sae& sae, const torch::Tensor& mlp_in,
               const torch::Tensor& resid_mid, const torch::Tensor& resid_post, int64_t k, int32_t* steps,
               int32_t* final_indices, float* final_values, int32_t* slot_ints, float* slot_activation) {
  const auto d = decompose_mlp(transcoder, mlp_in, resid_post.to(torch::kFloat64) - resid_mid.to(torch::kFloat64));
  const int64_t rows = d.terms.size(0) + 1;
  std::vector<int32_t> indices(rows * k);
  std::vector<float> values(rows * k);
  mlp_evolution_lists(sae, resid_mid, d, k, indices.data(), values.data());
  *steps = static_cast<int32_t>(rows);
  std::copy_n(indices.data() + (rows - 1) * k, k, final_indices);
  std::copy_n(values.data() + (rows - 1) * k, k, final_values);
  std::fill_n(slot_ints, k * kMlpSlotInts, -1);
  std::fill_n(slot_activation, k, std::numeric_limits<float>::quiet_NaN());
  for (const auto& n : mlp_newcomers(indices.data(), rows, k)) {
    int32_t* out = slot_ints + n.slot * kMlpSlotInts;
    out[0] = static_cast<int32_t>(n.step);
    out[1] = static_cast<int32_t>(d.kind[n.term]);
    out[2] = static_cast<int32_t>(d.feature[n.term]);
    if (d.kind[n.term] == MlpTermKind::Feature) slot_activation[n.slot] = static_cast<float>(d.activation[n.term]);
  }
}

}  // namespace saetraj::sweep
