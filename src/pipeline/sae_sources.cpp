#include "saetraj/pipeline/sae_sources.h"

#include <algorithm>
#include <map>
#include <regex>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/sae/gemma_scope2.h"
#include "saetraj/sae/gemma_scope_release.h"
#include "saetraj/sae/transcoder.h"

namespace saetraj::pipeline {

namespace {

// --gemmascope2-root: layer_L_width_W_l0_X per layer, X from --gemmascope2-l0 or --gemmascope2-l0-layer.
std::vector<std::string> gemma_scope2_paths(const SweepOptions& o, const std::vector<int>& layers) {
  SAETRAJ_CHECK(o.saes.empty() && o.gemmascope_root.empty(), InputError,
                "--gemmascope2-root supplies every layer's SAE; do not also give --sae or --gemmascope-root");
  static const std::regex choice(R"(^(small|medium|big)$)");
  SAETRAJ_CHECK(std::regex_match(o.gemmascope2_l0, choice), InputError, "--gemmascope2-l0 \"", o.gemmascope2_l0,
                "\": expected small, medium or big");
  std::map<int, std::string> per_layer;
  static const std::regex assignment(R"(^\s*(\d+)\s*=\s*(small|medium|big)\s*$)");
  for (const auto& spec : o.gemmascope2_l0_layers) {
    std::smatch m;
    SAETRAJ_CHECK(std::regex_match(spec, m, assignment), InputError, "--gemmascope2-l0-layer \"", spec,
                  "\": expected LAYER=small|medium|big, e.g. 3=big");
    const int layer = std::stoi(m[1].str());
    SAETRAJ_CHECK(std::find(layers.begin(), layers.end(), layer) != layers.end(), InputError,
                  "--gemmascope2-l0-layer ", spec, ": layer ", layer, " is not among the analysed layers");
    SAETRAJ_CHECK(per_layer.emplace(layer, m[2].str()).second, InputError, "--gemmascope2-l0-layer: layer ", layer,
                  " is given more than once");
  }
  std::vector<std::string> paths;
  for (int l : layers) {
    const std::string l0 = per_layer.count(l) ? per_layer.at(l) : o.gemmascope2_l0;
    paths.push_back(sae::resolve_gemma_scope2(o.gemmascope2_root, l, o.gemmascope2_width, l0));
  }
  return paths;
}

}  // namespace

std::vector<std::string> sweep_sae_paths(const SweepOptions& o, const std::vector<int>& layers) {
  if (!o.gemmascope2_root.empty()) return gemma_scope2_paths(o, layers);
  if (o.gemmascope_root.empty()) return resolve_sae_folders(o.saes, layers);
  SAETRAJ_CHECK(o.saes.empty(), InputError,
                "--gemmascope-root supplies every layer's SAE; do not also give --sae");
  SAETRAJ_CHECK(o.gemmascope_l0 >= 0, InputError, "--gemmascope-l0 must be >= 0 (0: canonical), got ",
                o.gemmascope_l0);
  // Per-layer targets (--gemmascope-l0-layer 3=193) win over --gemmascope-l0 and the canonical L0.
  std::map<int, double> per_layer;
  static const std::regex assignment(R"(^\s*(\d+)\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*$)");
  for (const auto& spec : o.gemmascope_l0_layers) {
    std::smatch m;
    SAETRAJ_CHECK(std::regex_match(spec, m, assignment), InputError, "--gemmascope-l0-layer \"", spec,
                  "\": expected LAYER=L0, e.g. 3=193");
    const int layer = std::stoi(m[1].str());
    SAETRAJ_CHECK(std::find(layers.begin(), layers.end(), layer) != layers.end(), InputError,
                  "--gemmascope-l0-layer ", spec, ": layer ", layer, " is not among the analysed layers");
    SAETRAJ_CHECK(per_layer.emplace(layer, std::stod(m[2].str())).second, InputError, "--gemmascope-l0-layer: layer ",
                  layer, " is given more than once");
  }
  std::vector<std::string> paths;
  for (int l : layers) {
    std::optional<double> target;
    if (o.gemmascope_l0 > 0) target = o.gemmascope_l0;
    if (per_layer.count(l)) target = per_layer.at(l);
    paths.push_back(sae::resolve_gemma_scope(o.gemmascope_root, l, o.gemmascope_width, target));
  }
  return paths;
}

std::vector<std::string> sweep_transcoder_paths(const SweepOptions& o, const std::vector<int>& layers) {
  std::map<int, std::string> explicit_folders;
  std::string pattern;
  static const std::regex assignment(R"(^(\d+)=(.+)$)");
  for (const auto& s : o.mlp_transcoders) {
    std::smatch m;
    if (std::regex_match(s, m, assignment)) {
      const int layer = std::stoi(m[1].str());
      SAETRAJ_CHECK(std::find(layers.begin(), layers.end(), layer) != layers.end(), InputError, "--mlp-transcoder ", s,
                    ": layer ", layer, " is not among the analysed layers (--layers)");
      SAETRAJ_CHECK(explicit_folders.emplace(layer, m[2].str()).second, InputError, "--mlp-transcoder: layer ", layer,
                    " is given more than once");
    } else {
      SAETRAJ_CHECK(s.find("{layer}") != std::string::npos, InputError, "--mlp-transcoder \"", s,
                    "\": expected a folder pattern containing {layer} or LAYER=FOLDER");
      SAETRAJ_CHECK(pattern.empty(), InputError, "--mlp-transcoder: only one {layer} pattern may be given");
      pattern = s;
    }
  }
  std::vector<std::string> paths;
  if (o.mlp_transcoders.empty()) return paths;
  for (int l : layers) {
    if (explicit_folders.count(l)) {
      paths.push_back(explicit_folders.at(l));
      continue;
    }
    SAETRAJ_CHECK(!pattern.empty(), InputError, "--mlp-transcoder: no transcoder given for analysed layer ", l,
                  " (add --mlp-transcoder ", l, "=FOLDER or a {layer} pattern; every analysed layer needs one)");
    std::string f = pattern;
    for (size_t pos; (pos = f.find("{layer}")) != std::string::npos;) f.replace(pos, 7, std::to_string(l));
    paths.push_back(f);
  }
  return paths;
}

std::vector<sae::SaeConfig> read_transcoder_configs(const std::vector<std::string>& paths, const std::vector<int>& layers,
                                                    int64_t d_model, const sae::SaeSourceOptions& options) {
  std::vector<sae::SaeConfig> cfgs;
  for (size_t i = 0; i < paths.size(); ++i) {
    auto cfg = with_context(str("--mlp-transcoder for layer ", layers[i]),
                            [&] { return sae::read_transcoder_config(paths[i], layers[i], options); });
    SAETRAJ_CHECK(cfg.d_in == d_model, InputError, "--mlp-transcoder for layer ", layers[i], " (", paths[i],
                  ") reads vectors of size ", cfg.d_in, " but the model's d_model is ", d_model);
    cfgs.push_back(std::move(cfg));
  }
  return cfgs;
}

sae::SaeSourceOptions sweep_sae_options(const SweepOptions& o, const model::ModelConfig& config) {
  sae::SaeSourceOptions options;
  if (o.center != "auto") options.sae_lens.center_residual = o.center == "on";
  options.gemma_scope.model_id = sae::gemma_scope_model_id(config.d_model, o.model);
  options.gemma_scope2.model_id = sae::gemma_scope2_model_id(config.d_model, o.model);
  return options;
}

}  // namespace saetraj::pipeline
