// Gemma Scope 2 SAEs (google/gemma-scope-2-<size>-pt/-it) as released: one folder per SAE,
// <site>/layer_L_width_W_l0_{small,medium,big}/params.safetensors, with lower-case tensors w_enc [d_model, W],
// w_dec [W, d_model], b_enc [W], b_dec [d_model] and threshold [W] (float32), and sometimes a config.json
// ({"architecture": "jump_relu", "hf_hook_point_in": ...}). <site> is resid_post (or resid_post_all), attn_out,
// mlp_out, transcoder or clt. The residual SAEs are JumpReLU on blocks.L.hook_resid_post, used without b_dec
// subtraction or any normalisation, trained on sequences that start with <bos>.
#pragma once

#include <optional>
#include <string>

#include "saetraj/sae/sae.h"

namespace saetraj::sae {

struct GemmaScope2Options {
  // Neuronpedia model id, the first half of "<model_id>/<L>-gemmascope-2-res-<width>"; a config.json's
  // model_name wins over it.
  std::string model_id = "gemma-3";
  // The layer, when the folder name has no "layer_L" to read it from.
  std::optional<int> layer;
};

// Whether `path` is a params.safetensors file or a folder that holds one.
bool is_gemma_scope2(const std::string& path);

// Reads config.json (if any), the folder names and the tensor headers only (cheap).
SaeConfig read_gemma_scope2_config(const std::string& path, const GemmaScope2Options& options = {});

// Loads w_enc, b_enc, b_dec and threshold (never w_dec), every shape checked; refuses anything that is not a
// residual SAE (attn_out reads hook_z, mlp_out the MLP output, transcoders map the MLP).
Sae load_gemma_scope2(const std::string& path, const GemmaScope2Options& options = {});

// One SAE from a release tree: <root>/resid_post/layer_L_width_W_l0_X (root may also be the resid_post or
// resid_post_all folder itself, or hold only resid_post_all). `l0` is small, medium or big. Errors list the
// folders that exist for that layer.
std::string resolve_gemma_scope2(const std::string& root, int layer, const std::string& width, const std::string& l0);

// Neuronpedia model id by hidden size: gemma-3-270m (640), -1b (1152), -4b (2560), -12b (3840), -27b (5376),
// else the checkpoint folder's name.
std::string gemma_scope2_model_id(int64_t d_model, const std::string& model_folder);

}  // namespace saetraj::sae
