#include "decoder_ops.h"

#include <cmath>

namespace saetraj::model::ops {

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& scale, double eps) {
  const auto xf = x.to(torch::kFloat32);
  return xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps) * scale;
}

namespace {

// Inverse frequencies in float32, as transformers computes them: 1 / theta^(2i / head_dim).
torch::Tensor inverse_frequencies(const RopeParams& c, int64_t head_dim) {
  const auto exponents = torch::arange(0, head_dim, 2, torch::kInt64).to(torch::kFloat32) / double(head_dim);
  auto inv = 1.0 / torch::pow(torch::tensor(c.theta, torch::kFloat32), exponents);
  if (c.type == "linear") return inv / c.factor;
  if (c.type != "llama3") return inv;
  // Llama 3.1 scaling: wavelengths longer than original_max / low_freq_factor are divided by factor,
  // those shorter than original_max / high_freq_factor are kept, and the band between is interpolated.
  const double low_wavelen = c.original_max_position / c.low_freq_factor;
  const double high_wavelen = c.original_max_position / c.high_freq_factor;
  const auto wavelen = 2.0 * M_PI / inv;
  auto scaled = torch::where(wavelen > low_wavelen, inv / c.factor, inv);
  const auto smooth = (c.original_max_position / wavelen - c.low_freq_factor) /
                      (c.high_freq_factor - c.low_freq_factor);
  const auto blended = (1.0 - smooth) * scaled / c.factor + smooth * scaled;
  const auto medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen);
  return torch::where(medium, blended, scaled);
}

}  // namespace

RopeTables rope_tables(const RopeParams& rope, int64_t head_dim, int64_t n, const torch::Device& device) {
  const auto positions = torch::arange(n, torch::kInt64).to(torch::kFloat32);
  const auto freqs = torch::outer(positions, inverse_frequencies(rope, head_dim));  // [n, hd/2]
  const auto emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos().to(device), emb.sin().to(device)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& t) {
  const int64_t half = x.size(-1) / 2;
  const auto rotated = torch::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
  return x * t.cos + rotated * t.sin;
}

torch::Tensor expand_kv(const torch::Tensor& kv, int64_t n_heads) {
  const int64_t group = n_heads / kv.size(0);
  return group == 1 ? kv : kv.repeat_interleave(group, 0);
}

torch::Tensor attention_mask(int64_t n, int64_t window, const torch::Device& device) {
  const auto options = torch::dtype(torch::kBool).device(device);
  auto mask = torch::ones({n, n}, options).triu(1);
  if (window > 0) mask = mask | torch::ones({n, n}, options).tril(-window);
  return mask;
}

}  // namespace saetraj::model::ops
