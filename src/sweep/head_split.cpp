// The head split of a newcomer's pre-activation jump (NOTE in include/saetraj/sweep/head_split.h), in
// float64 LibTorch ops on the request's device.
#include "saetraj/sweep/head_split.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "factored_common.h"
#include "saetraj/core/error.h"

namespace saetraj::sweep {

using factored_detail::Preprocessing;
using factored_detail::Scale;

std::vector<int64_t> entry_steps(const int32_t* lists, int64_t q, int64_t k, int64_t slots) {
  const int64_t steps = q + 2;
  const int32_t* last = lists + (steps - 1) * k;
  std::vector<int64_t> entry(static_cast<size_t>(slots), -1);
  auto listed = [&](int64_t s, int32_t f) {
    const int32_t* row = lists + s * k;
    for (int64_t i = 0; i < k; ++i) {
      if (row[i] == f) return true;
    }
    return false;
  };
  for (int64_t slot = 0; slot < slots && slot < k; ++slot) {
    const int32_t f = last[slot];
    if (f < 0 || listed(0, f)) continue;
    for (int64_t s = 1; s < steps; ++s) {
      if (listed(s, f)) {
        entry[slot] = s;
        break;
      }
    }
  }
  return entry;
}

namespace {

// sigma of each row of x [rows, d] (float64), as the factored method defines it.
torch::Tensor sigma_rows64(const Preprocessing& pre, const torch::Tensor& x) {
  if (pre.scale == Scale::One) return torch::ones({x.size(0)}, x.options());
  const auto centred = pre.centre ? x - x.mean(-1, true) : x;
  const auto norm_sq = centred.pow(2).sum(-1);
  if (pre.scale == Scale::LayerNorm) return 1.0 / ((norm_sq / static_cast<double>(pre.d - 1)).sqrt() + 1e-5);
  return std::sqrt(static_cast<double>(pre.d)) / norm_sq.sqrt();
}

}  // namespace

void head_split(const sae::Sae& sae, const EvolutionRequest& request, int64_t q, const int32_t* lists, int64_t k,
                int64_t slots, float* out) {
  c10::InferenceMode guard;
  const auto& parts = *request.parts;
  const int64_t heads = parts.pattern.size(0), columns = split_columns(heads);
  SAETRAJ_CHECK(q >= 1 && q < parts.pattern.size(1), InputError, "head split: query ", q, " is outside [1, ",
                parts.pattern.size(1), ")");
  std::fill(out, out + slots * columns, std::numeric_limits<float>::quiet_NaN());
  const auto entry = entry_steps(lists, q, k, slots);
  std::vector<int64_t> slot_of, feature, step;
  for (int64_t slot = 0; slot < slots; ++slot) {
    if (entry[slot] < 0) continue;
    slot_of.push_back(slot);
    feature.push_back(lists[(q + 1) * k + slot]);
    step.push_back(entry[slot]);
  }
  if (slot_of.empty()) return;
  const auto count = static_cast<int64_t>(slot_of.size());
  const auto device = request.resid_pre->device();
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(device);
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  const auto features = torch::from_blob(feature.data(), {count}, i64).to(device);
  const auto steps = torch::from_blob(step.data(), {count}, i64).to(device);
  const auto sources = steps - 1;  // j: the token whose addition brought the feature in

  const auto w = sae.w_enc.index_select(1, features).to(f64).t();  // [F, d]: W_enc[:, f] per newcomer
  const auto pattern = parts.pattern.select(1, q).slice(1, 0, q + 1).to(f64);  // [H, q+1]
  const auto head_out = parts.head_out.slice(1, 0, q + 1).to(f64);              // [H, q+1, d]
  auto a = (pattern.unsqueeze(-1) * head_out).sum(0);                          // [q+1, d]
  const bool has_bias = parts.bias.defined();
  const auto bias = has_bias ? parts.bias.to(f64) : torch::Tensor();
  if (has_bias) a = a + bias / static_cast<double>(q + 1);
  const auto c = a.cumsum(0);
  const bool norm = request.post_norm && request.post_norm->enabled;
  const auto g = norm ? request.post_norm->weight.to(f64) : torch::ones({sae.cfg.d_in}, f64);
  const auto rho = norm ? (c.pow(2).mean(-1) + request.post_norm->eps).rsqrt() : torch::ones({q + 1}, f64);
  const auto r = request.resid_pre->select(0, q).to(f64);
  const auto x = torch::cat({r.unsqueeze(0), r + rho.unsqueeze(-1) * c * g}, 0);  // [q+2, d]: step s

  // The jump, from the SAE's own preprocessing of the two steps (b_enc and b_dec W_enc cancel).
  const auto encoded = sae.preprocess(x);
  const auto jump = ((encoded.index_select(0, steps) - encoded.index_select(0, sources)) * w).sum(-1);  // [F]

  const Preprocessing pre(sae.cfg);
  const auto scale = sigma_rows64(pre, x.index_select(0, steps)) * rho.index_select(0, sources);  // [F]
  auto centre = [&](const torch::Tensor& v) { return pre.centre ? v - v.mean(-1, true) : v; };
  const auto u = centre(head_out.index_select(1, sources).transpose(0, 1) * g);  // [F, H, d]
  const auto weights = pattern.index_select(1, sources).t();                     // [F, H]
  const auto head_parts = (u * w.unsqueeze(1)).sum(-1) * weights * scale.unsqueeze(-1);  // [F, H]
  auto bias_part = torch::zeros({count}, f64);
  if (has_bias) bias_part = (centre(bias * g).unsqueeze(0) * w).sum(-1) * scale / static_cast<double>(q + 1);
  const auto unassigned = jump - head_parts.sum(-1) - bias_part;

  const auto table = torch::cat({jump.unsqueeze(-1), bias_part.unsqueeze(-1), unassigned.unsqueeze(-1), head_parts}, 1)
                         .to(torch::kFloat32)
                         .to(torch::kCPU)
                         .contiguous();
  const float* rows = table.data_ptr<float>();
  for (int64_t i = 0; i < count; ++i) std::copy(rows + i * columns, rows + (i + 1) * columns, out + slot_of[i] * columns);
}

}  // namespace saetraj::sweep
