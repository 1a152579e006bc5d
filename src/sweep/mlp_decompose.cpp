#include "saetraj/sweep/mlp_decompose.h"

#include <algorithm>
#include <numeric>

#include "saetraj/core/error.h"
#include "saetraj/sweep/topk.h"

namespace saetraj::sweep {

const char* mlp_term_name(MlpTermKind kind) {
  switch (kind) {
    case MlpTermKind::Feature: return "feature";
    case MlpTermKind::Bias: return "bias";
    case MlpTermKind::Skip: return "skip";
    case MlpTermKind::Error: return "error";
  }
  return "?";
}

MlpDecomposition decompose_mlp(const sae::Transcoder& transcoder, const torch::Tensor& mlp_in,
                               const torch::Tensor& mlp_out) {
  SAETRAJ_CHECK(mlp_in.dim() == 1 && mlp_in.size(0) == transcoder.cfg().d_in, InputError,
                "MLP decomposition: the MLP input has ", mlp_in.numel(), " values, the transcoder ",
                transcoder.cfg().source, " reads d_in = ", transcoder.cfg().d_in);
  SAETRAJ_CHECK(mlp_out.dim() == 1 && mlp_out.size(0) == transcoder.d_out, InputError,
                "MLP decomposition: the MLP output has ", mlp_out.numel(), " values, the transcoder ",
                transcoder.cfg().source, " writes d_out = ", transcoder.d_out);
  const auto x = mlp_in.to(torch::kFloat32).unsqueeze(0);
  const auto acts = transcoder.encode(x).squeeze(0).to(torch::kCPU);  // float32, as the transcoder decides
  const auto active = torch::nonzero(acts.gt(0)).flatten();
  const auto w_dec = transcoder.w_dec.index_select(0, active.to(transcoder.w_dec.device())).to(torch::kCPU, torch::kFloat64);
  const auto a = acts.index_select(0, active).to(torch::kFloat64);
  const auto contributions = w_dec * a.unsqueeze(1);  // [F, d]
  const auto norms = contributions.norm(2, 1);

  // Largest norm first, ties by lower feature index (active is ascending, so a stable sort keeps it).
  std::vector<int64_t> order(static_cast<size_t>(active.size(0)));
  std::iota(order.begin(), order.end(), 0);
  const auto* n = norms.data_ptr<double>();
  std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return n[i] > n[j]; });

  MlpDecomposition d;
  std::vector<torch::Tensor> rows;
  const auto* feature_index = active.data_ptr<int64_t>();
  const auto* act = a.data_ptr<double>();
  for (const int64_t i : order) {
    rows.push_back(contributions[i]);
    d.kind.push_back(MlpTermKind::Feature);
    d.feature.push_back(feature_index[i]);
    d.activation.push_back(act[i]);
  }
  const auto add = [&](MlpTermKind kind, const torch::Tensor& term) {
    rows.push_back(term);
    d.kind.push_back(kind);
    d.feature.push_back(-1);
    d.activation.push_back(0.0);
  };
  const auto b_dec = transcoder.b_dec.to(torch::kCPU, torch::kFloat64);
  add(MlpTermKind::Bias, b_dec);
  auto predicted = contributions.sum(0) + b_dec;
  if (transcoder.has_skip()) {
    const auto skip = transcoder.w_skip.to(torch::kCPU, torch::kFloat64).mv(mlp_in.to(torch::kCPU, torch::kFloat64));
    add(MlpTermKind::Skip, skip);
    predicted = predicted + skip;
  }
  add(MlpTermKind::Error, mlp_out.to(torch::kCPU, torch::kFloat64) - predicted);
  d.terms = torch::stack(rows);
  return d;
}

torch::Tensor mlp_evolution_inputs(const torch::Tensor& resid_mid, const MlpDecomposition& d) {
  const auto base = resid_mid.to(torch::kCPU, torch::kFloat64).reshape({1, -1});
  SAETRAJ_CHECK(base.size(1) == d.terms.size(1), InputError, "MLP decomposition: resid_mid has ", base.size(1),
                " values, the terms ", d.terms.size(1));
  return torch::cat({base, base + d.terms.cumsum(0)}).to(torch::kFloat32).contiguous();
}

void mlp_evolution_lists(const sae::Sae& sae, const torch::Tensor& resid_mid, const MlpDecomposition& d, int64_t k,
                         int32_t* indices, float* values) {
  const auto x = mlp_evolution_inputs(resid_mid, d).to(sae.w_enc.device());
  const auto acts = sae.encode(x).to(torch::kCPU, torch::kFloat32).contiguous();
  topk_active(acts, k, indices, values);
}

std::vector<MlpNewcomer> mlp_newcomers(const int32_t* indices, int64_t steps, int64_t k) {
  const auto listed = [&](int64_t s, int32_t f) {
    const int32_t* row = indices + s * k;
    return std::find(row, row + k, f) != row + k;
  };
  std::vector<MlpNewcomer> out;
  const int32_t* last = indices + (steps - 1) * k;
  for (int64_t slot = 0; slot < k; ++slot) {
    const int32_t f = last[slot];
    if (f < 0 || listed(0, f)) continue;
    for (int64_t s = 1; s < steps; ++s) {
      if (listed(s, f)) {
        out.push_back({f, slot, s, s - 1});
        break;
      }
    }
  }
  return out;
}

}  // namespace saetraj::sweep
