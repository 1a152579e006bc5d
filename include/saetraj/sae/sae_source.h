// One entry point for every SAE layout the sweep accepts, told apart by their files: a Gemma Scope
// params.npz (or its folder), a Gemma Scope 2 params.safetensors (or its folder), a Llama Scope folder
// (hyperparams.json), a sparsify folder (cfg.json + sae.safetensors), else an SAE-Lens folder (cfg.json +
// sae_weights.safetensors).
#pragma once

#include <string>

#include "saetraj/sae/gemma_scope.h"
#include "saetraj/sae/gemma_scope2.h"
#include "saetraj/sae/llama_scope.h"
#include "saetraj/sae/sae_lens.h"
#include "saetraj/sae/sparsify.h"

namespace saetraj::sae {

struct SaeSourceOptions {
  SaeLoadOptions sae_lens;
  GemmaScopeOptions gemma_scope;  // its `layer` is the fallback when the path names none
  GemmaScope2Options gemma_scope2;  // likewise
};

// Whether `path` is an SAE in any of the layouts above.
bool is_sae_path(const std::string& path);

// The SAE's configuration whatever it reads (what `saetraj info` shows): no hook requirement.
SaeConfig inspect_sae(const std::string& path, int layer, const SaeSourceOptions& options);

// `layer` is the model layer the SAE is assigned to: a Gemma Scope path without a layer_L component
// takes it as its hook layer. Both refuse an SAE that does not read the residual stream
// (require_residual_hook).
SaeConfig read_sae_config(const std::string& path, int layer, const SaeSourceOptions& options);
Sae load_sae(const std::string& path, int layer, const SaeSourceOptions& options);

// The Neuronpedia model id of Gemma Scope SAEs for a model: gemma-2-2b, gemma-2-9b or gemma-2-27b by
// hidden size (2304, 3584, 4608), else the checkpoint folder's name.
std::string gemma_scope_model_id(int64_t d_model, const std::string& model_folder);

}  // namespace saetraj::sae
