#include "bench_baseline.h"

#include <cmath>
#include <cstring>

#include "saetraj/io/safetensors.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::cli {

void write_baseline_sae(const sae::Sae& sae, const std::string& path) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"W_enc", sae.w_enc},
      {"W_dec", torch::randn({sae.cfg.d_sae, sae.cfg.d_in}) / std::sqrt(static_cast<double>(sae.cfg.d_sae))},
      {"b_enc", sae.b_enc},
      {"b_dec", sae.b_dec}};
  if (sae.threshold.defined()) tensors.emplace_back("threshold", sae.threshold);
  io::write_safetensors(path, tensors);
}

void baseline_evolution(const std::string& sae_path, const sae::SaeConfig& cfg, const torch::Tensor& resid_pre,
                        const sweep::AttentionParts& parts, int64_t k, int32_t* indices, float* values) {
  c10::InferenceMode guard;
  // The whole SAE, read for this prompt and layer: every tensor copied out of the file.
  const auto file = io::SafetensorsFile::open(sae_path);
  sae::Sae sae;
  sae.cfg = cfg;
  sae.w_enc = file->load("W_enc");
  const auto w_dec = file->load("W_dec");  // loaded and never used, as in the original
  sae.b_enc = file->load("b_enc");
  sae.b_dec = file->load("b_dec");
  if (file->contains("threshold")) sae.threshold = file->load("threshold");
  const sweep::PostAttention identity = [](const torch::Tensor& x) { return x; };
  const int64_t n = resid_pre.size(0);
  int64_t row = 0;
  for (int64_t q = 1; q < n; ++q) {
    const auto x = sweep::evolution_inputs(resid_pre, parts, identity, q, q + 1);  // [q+2, d]
    const auto top = sae.encode(x).topk(k, -1);  // over all features, zeros included
    const auto idx = std::get<1>(top).to(torch::kInt32).contiguous();
    const auto val = std::get<0>(top).contiguous();
    std::memcpy(indices + row * k, idx.data_ptr<int32_t>(), sizeof(int32_t) * idx.numel());
    std::memcpy(values + row * k, val.data_ptr<float>(), sizeof(float) * val.numel());
    row += sweep::steps_of_query(q);
  }
}

}  // namespace saetraj::cli
