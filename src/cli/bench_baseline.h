// The benchmark's baseline: the evolution tables computed the way the original research code did, kept
// only to measure saetraj against it. Not used by any sweep.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "saetraj/sae/sae.h"
#include "saetraj/sweep/decompose.h"

namespace saetraj::cli {

// Writes the SAE as one safetensors file with W_enc, W_dec (random, [d_sae, d_in]), b_enc, b_dec and the
// threshold: what the original code loaded per layer.
void write_baseline_sae(const sae::Sae& sae, const std::string& path);

// One layer, one prompt, as the original code: load the whole SAE file (W_enc and W_dec) into memory,
// then for each query q build its q+2 vectors, encode them to full activations, and take torch::topk over
// all d_sae features. Writes rows x k entries (inactive features included, as the original did).
void baseline_evolution(const std::string& sae_path, const sae::SaeConfig& cfg, const torch::Tensor& resid_pre,
                        const sweep::AttentionParts& parts, int64_t k, int32_t* indices, float* values);

}  // namespace saetraj::cli
