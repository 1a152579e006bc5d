// EleutherAI sparsify SAEs (e.g. EleutherAI/sae-llama-3-8b-32x) as saved by SparseCoder.save_to_disk: one
// folder per hookpoint, named after the module it reads ("layers.6" = the output of decoder layer 6, i.e.
// blocks.6.hook_resid_post; "layers.6.mlp", "layers.6.self_attn", "embed_tokens"), holding cfg.json
// ({"activation": "topk", "k", "num_latents" or "expansion_factor", "d_in", "transcode", ...}) and
// sae.safetensors (encoder.weight [latents, d_in], encoder.bias [latents], W_dec [latents, d_in],
// b_dec [d_in]). The training run's config.json beside the folders names the model.
//
// Encoding, as sparsify's SparseCoder.encode does it: b_dec is subtracted first (not for transcoders), then
// TopK over ReLU(x W_enc + b_enc). (SAE-Lens's sparsify loader subtracts b_dec only when normalize_decoder is
// false; sparsify itself always does for an SAE, and that is what is followed here.)
#pragma once

#include <string>

#include "saetraj/sae/sae.h"

namespace saetraj::sae {

// Whether `path` is a folder with cfg.json and sae.safetensors.
bool is_sparsify(const std::string& path);

// Reads cfg.json, the folder name and the tensor headers (cheap).
SaeConfig read_sparsify_config(const std::string& folder);

// Loads the encoder (W_enc = encoder.weight transposed) and b_dec; refuses a non-residual hookpoint.
Sae load_sparsify(const std::string& folder);

}  // namespace saetraj::sae
