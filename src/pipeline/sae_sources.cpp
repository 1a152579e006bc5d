#include "saetraj/pipeline/sae_sources.h"

#include "saetraj/core/error.h"
#include "saetraj/sae/gemma_scope_release.h"

namespace saetraj::pipeline {

std::vector<std::string> sweep_sae_paths(const SweepOptions& o, const std::vector<int>& layers) {
  if (o.gemmascope_root.empty()) return resolve_sae_folders(o.saes, layers);
  SAETRAJ_CHECK(o.saes.empty(), InputError,
                "--gemmascope-root supplies every layer's SAE; do not also give --sae");
  SAETRAJ_CHECK(o.gemmascope_l0 >= 0, InputError, "--gemmascope-l0 must be >= 0 (0: canonical), got ",
                o.gemmascope_l0);
  std::vector<std::string> paths;
  for (int l : layers) {
    paths.push_back(sae::resolve_gemma_scope(
        o.gemmascope_root, l, o.gemmascope_width,
        o.gemmascope_l0 > 0 ? std::optional<double>(o.gemmascope_l0) : std::nullopt));
  }
  return paths;
}

sae::SaeSourceOptions sweep_sae_options(const SweepOptions& o, const model::ModelConfig& config) {
  sae::SaeSourceOptions options;
  if (o.center != "auto") options.sae_lens.center_residual = o.center == "on";
  options.gemma_scope.model_id = sae::gemma_scope_model_id(config.d_model, o.model);
  return options;
}

}  // namespace saetraj::pipeline
