// One entry point for every SAE layout the sweep accepts: a Gemma Scope params.npz (or its folder), else
// an SAE-Lens folder (cfg.json + sae_weights.safetensors).
#pragma once

#include <string>

#include "saetraj/sae/gemma_scope.h"
#include "saetraj/sae/sae_lens.h"

namespace saetraj::sae {

struct SaeSourceOptions {
  SaeLoadOptions sae_lens;
  GemmaScopeOptions gemma_scope;  // its `layer` is the fallback when the path names none
};

// `layer` is the model layer the SAE is assigned to: a Gemma Scope path without a layer_L component
// takes it as its hook layer.
SaeConfig read_sae_config(const std::string& path, int layer, const SaeSourceOptions& options);
Sae load_sae(const std::string& path, int layer, const SaeSourceOptions& options);

// The Neuronpedia model id of Gemma Scope SAEs for a model: gemma-2-2b, gemma-2-9b or gemma-2-27b by
// hidden size (2304, 3584, 4608), else the checkpoint folder's name.
std::string gemma_scope_model_id(int64_t d_model, const std::string& model_folder);

}  // namespace saetraj::sae
