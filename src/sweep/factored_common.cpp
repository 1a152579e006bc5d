#include "factored_common.h"

#include <algorithm>
#include <cmath>

namespace saetraj::sweep::factored_detail {

Preprocessing::Preprocessing(const sae::SaeConfig& cfg) : d(cfg.d_in) {
  switch (cfg.normalization) {
    case sae::Normalization::LayerNorm: centre = true, scale = Scale::LayerNorm; break;
    case sae::Normalization::ConstantNormRescale: centre = cfg.center_residual, scale = Scale::UnitNorm; break;
    case sae::Normalization::None:
    case sae::Normalization::ExpectedAverageOnlyIn:  // folded into the weights (sae.h, [NOTE] Folding at load)
    case sae::Normalization::ConstantScalarRescale: centre = cfg.center_residual; break;
  }
}

double Preprocessing::sigma(const float* x) const {
  if (scale == Scale::One) return 1.0;
  double sum = 0.0, sumsq = 0.0;
  for (int64_t f = 0; f < d; ++f) sum += x[f], sumsq += static_cast<double>(x[f]) * x[f];
  const double mean = centre ? sum / d : 0.0;
  const double norm_sq = std::max(0.0, sumsq - d * mean * mean);  // |Pi x|^2
  if (scale == Scale::LayerNorm) return 1.0 / (std::sqrt(norm_sq / (d - 1)) + 1e-5);
  return std::sqrt(static_cast<double>(d)) / std::sqrt(norm_sq);
}

torch::Tensor Preprocessing::sigma_rows(const torch::Tensor& x) const {
  const auto options = x.options().dtype(torch::kFloat32);
  if (scale == Scale::One) return torch::ones(x.sizes().slice(0, x.dim() - 1), options);
  const auto x64 = x.to(torch::kFloat64);
  const auto sumsq = x64.pow(2).sum(-1);
  auto norm_sq = sumsq;
  if (centre) {
    const auto mean = x64.mean(-1);
    norm_sq = (sumsq - static_cast<double>(d) * mean * mean).clamp_min(0.0);
  }
  const auto sigma = scale == Scale::LayerNorm ? 1.0 / ((norm_sq / static_cast<double>(d - 1)).sqrt() + 1e-5)
                                               : std::sqrt(static_cast<double>(d)) / norm_sq.sqrt();
  return sigma.to(torch::kFloat32);
}

torch::Tensor projection_inputs(const sae::Sae& sae, const Preprocessing& pre, const EvolutionRequest& req,
                                const Layout& layout, int64_t n) {
  const auto& parts = *req.parts;
  const int64_t d = sae.cfg.d_in, heads = layout.heads;
  const auto options = req.resid_pre->options().dtype(torch::kFloat32);
  const bool norm = req.post_norm && req.post_norm->enabled;
  const auto g = norm ? req.post_norm->weight.to(options) : torch::ones({d}, options);
  auto x = torch::zeros({layout.rows(n), d}, options);
  if (parts.bias.defined()) x[Layout::kBias] = parts.bias.to(options) * g;
  if (sae.cfg.apply_b_dec_to_input) x[Layout::kDec] = sae.b_dec.to(options);
  auto per_source = x.slice(0, 2).view({n, heads + 1, d});
  per_source.slice(1, 0, heads).copy_(parts.head_out.slice(1, 0, n).to(options).transpose(0, 1) * g);
  per_source.select(1, heads).copy_(req.resid_pre->slice(0, 0, n).to(options));
  if (pre.centre) {
    auto centred = x.narrow(0, Layout::kBias, 1);
    centred.sub_(centred.mean(-1, true));
    per_source.sub_(per_source.mean(-1, true));
  }
  return x;
}

}  // namespace saetraj::sweep::factored_detail
