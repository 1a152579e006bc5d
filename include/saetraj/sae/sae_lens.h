// SAE-Lens saved SAEs: a folder with cfg.json and sae_weights.safetensors. Both cfg generations are read:
// SAE-Lens 6 (hook_name, model_name, neuronpedia_id, ... under "metadata"; "architecture") and the older
// flat files (hook_point / hook_name at top level, activation_fn_str, activation_fn_kwargs.k, boolean or
// string normalize_activations).
#pragma once

#include <optional>
#include <string>

#include "saetraj/sae/sae.h"

namespace saetraj::sae {

struct SaeLoadOptions {
  // Residual centring: unset = follow the cfg (model_from_pretrained_kwargs.center_writing_weights; for
  // TransformerLens-trained GPT-2 SAEs that default is true).
  std::optional<bool> center_residual;
};

// Reads cfg.json only (cheap): what `saetraj info` shows and the work planner needs.
SaeConfig read_sae_lens_config(const std::string& folder, const SaeLoadOptions& options = {});

// Reads cfg.json and the encoder tensors; checks every shape against d_in/d_sae.
Sae load_sae_lens(const std::string& folder, const SaeLoadOptions& options = {});

}  // namespace saetraj::sae
