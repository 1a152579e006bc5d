// Writers of SAE files in the exact on-disk layouts of the public releases, from given tensors: the tests
// (and synthetic fixtures) go through the same readers as real downloads. Layouts:
//  - Gemma Scope 2: <root>/<site>/layer_L_width_W_l0_X/params.safetensors (w_enc [d, W], w_dec [W, d], b_enc,
//    b_dec, threshold; float32), optionally config.json {"architecture": "jump_relu", "model_name",
//    "hf_hook_point_in"[, "hf_hook_point_out"]};
//  - Llama Scope: <root>/Llama3_1-8B-Base-L<L><P>-<E>x/hyperparams.json + checkpoints/final.safetensors
//    (encoder.weight [W, d], encoder.bias, decoder.weight [d, W], decoder.bias);
//  - sparsify: <root>/<hookpoint>/cfg.json + sae.safetensors (encoder.weight [W, d], encoder.bias, W_dec [W, d],
//    b_dec), and the run's <root>/config.json naming the model;
//  - SAE-Lens 6: <folder>/cfg.json (with "metadata") + sae_weights.safetensors.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "saetraj/io/safetensors.h"

namespace saetraj::synth {

// One SAE's tensors in SAE-Lens orientation: w_enc [d, W], w_dec [W, d], b_enc [W], b_dec [d], threshold [W].
struct RawSae {
  torch::Tensor w_enc, w_dec, b_enc, b_dec, threshold;
};

// Random tensors (float32, deterministic from `seed`): decoder rows of unequal norms, thresholds in [0, 0.3).
RawSae random_raw_sae(int64_t d, int64_t width, uint64_t seed);

struct GemmaScope2Spec {
  std::string site = "resid_post";  // resid_post, resid_post_all, attn_out, mlp_out, transcoder
  int layer = 0;
  std::string width = "16k";
  std::string l0 = "medium";        // small, medium, big
  bool config_json = false;         // also write config.json (some release folders have one)
  std::string model_name = "gemma-v3-1b-pt";
};
// Returns the SAE folder.
std::string write_gemma_scope2_sae(const std::string& root, const GemmaScope2Spec& spec, const RawSae& sae);

struct LlamaScopeSpec {
  int layer = 0;
  std::string position = "R";  // R (resid_post), A (attn_out), M (mlp_out), TC (transcoder)
  int expansion = 8;
  double jump_relu_threshold = 0.2;
  double average_norm_in = 6.0, average_norm_out = 6.0;
  std::string norm_activation = "dataset-wise";
  io::DType storage = io::DType::F32;
};
std::string write_llama_scope_sae(const std::string& root, const LlamaScopeSpec& spec, const RawSae& sae);

struct SparsifySpec {
  std::string hookpoint = "layers.0";
  int64_t k = 8;
  bool transcode = false;
  std::string activation = "topk";
  std::string model = "meta-llama/Meta-Llama-3-8B";  // written to the run's config.json
};
std::string write_sparsify_sae(const std::string& root, const SparsifySpec& spec, const RawSae& sae);

// An SAE-Lens 6 folder: `cfg` gets d_in, d_sae, dtype, device and a metadata block with `hook_name` and
// `model_name`; the tensors are written as given.
void write_sae_lens_sae(const std::string& folder, nlohmann::json cfg, const std::string& hook_name,
                        const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

// A transcoder's tensors in SAE-Lens orientation: w_enc [d_in, W], b_enc [W], w_dec [W, d_out], b_dec [d_out],
// threshold [W], w_skip [d_out, d_in] (undefined: no skip term).
struct RawTranscoder {
  torch::Tensor w_enc, b_enc, w_dec, b_dec, threshold, w_skip;
};
// Random tensors (float32, deterministic from `seed`), biases and thresholds such that a few features of a
// unit-scale input are active.
RawTranscoder random_raw_transcoder(int64_t d_in, int64_t d_out, int64_t width, bool skip, uint64_t seed);

// An SAE-Lens 6 transcoder folder as Transcoder.save_model writes it: cfg.json (architecture, d_in, d_sae, d_out,
// apply_b_dec_to_input false, metadata.hook_name = blocks.L.ln2.hook_normalized, metadata.hook_name_out =
// blocks.L.hook_mlp_out) and sae_weights.safetensors with the architecture's tensors (threshold for jumprelu_*,
// W_skip for *skip*).
void write_sae_lens_transcoder(const std::string& folder, const std::string& architecture, int layer,
                               const RawTranscoder& t);
// Gemma Scope 1 (gemma-scope-2b-pt-transcoders): <root>/layer_L/width_W/average_l0_N/params.npz with W_enc,
// W_dec, b_enc, b_dec, threshold. Returns the folder.
std::string write_gemma_scope_transcoder(const std::string& root, int layer, const std::string& width, int l0,
                                         const RawTranscoder& t);
// Gemma Scope 2: <root>/<spec.site>/layer_L_width_W_l0_X[_affine]/params.safetensors (w_enc, w_dec, b_enc, b_dec,
// threshold, and affine_skip_connection [d_in, d_out] with "_affine" when t.w_skip is defined), config.json
// (with affine_connection) if spec.config_json. Returns the folder.
std::string write_gemma_scope2_transcoder(const std::string& root, const GemmaScope2Spec& spec,
                                          const RawTranscoder& t);

}  // namespace saetraj::synth
