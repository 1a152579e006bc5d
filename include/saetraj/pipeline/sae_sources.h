// Which SAE file or folder each analysed layer of a sweep reads, and how: --sae (SAE-Lens folders or
// Gemma Scope params.npz folders, by pattern or LAYER=FOLDER) or a Gemma Scope release tree
// (--gemmascope-root/--gemmascope-width/--gemmascope-l0), or a Gemma Scope 2 release tree
// (--gemmascope2-root/--gemmascope2-width/--gemmascope2-l0).
#pragma once

#include <string>
#include <vector>

#include "saetraj/model/config.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/sae.h"
#include "saetraj/sae/sae_source.h"

namespace saetraj::pipeline {

// One path per entry of `layers`. --gemmascope-root supplies every layer and excludes --sae.
std::vector<std::string> sweep_sae_paths(const SweepOptions& o, const std::vector<int>& layers);

// The --mlp-transcoder folder of each entry of `layers` (pattern with {layer} and/or LAYER=FOLDER, as --sae);
// empty without the option. A LAYER=FOLDER for a layer that is not analysed, or an analysed layer without a
// transcoder, is refused.
std::vector<std::string> sweep_transcoder_paths(const SweepOptions& o, const std::vector<int>& layers);

// The cfg of each transcoder of `paths` (one per entry of `layers`, sweep_transcoder_paths): it must read that
// layer's MLP input and predict its hook_mlp_out (sae::require_mlp_transcoder), from vectors of size d_model;
// InputError naming the layer otherwise. Its d_out is checked when it is loaded.
std::vector<sae::SaeConfig> read_transcoder_configs(const std::vector<std::string>& paths, const std::vector<int>& layers,
                                                    int64_t d_model, const sae::SaeSourceOptions& options);

// --center for SAE-Lens SAEs; the Neuronpedia model id for Gemma Scope SAEs (sae::gemma_scope_model_id).
sae::SaeSourceOptions sweep_sae_options(const SweepOptions& o, const model::ModelConfig& config);

}  // namespace saetraj::pipeline
