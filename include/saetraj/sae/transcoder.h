// Transcoders of a layer's MLP, as the MLP decomposition (issue 15 part 3) uses them: the encoder reads the
// MLP's input at the last position, and the decoder (with its bias and, when there is one, a skip term) predicts
// the MLP's output. Three published layouts are read:
//  - SAE-Lens 6 folders (cfg.json + sae_weights.safetensors) of architecture transcoder, skip_transcoder,
//    jumprelu_transcoder or jumprelu_skip_transcoder: W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_out],
//    b_dec [d_out], threshold [d_sae] (jumprelu_*), W_skip [d_out, d_in] (*skip*); cfg.json gives d_out and,
//    under "metadata", hook_name and hook_name_out. b_dec is never subtracted from the input (SAE-Lens refuses
//    apply_b_dec_to_input for transcoders), and only normalize_activations "none" is accepted;
//  - Gemma Scope 1 transcoders (google/gemma-scope-2b-pt-transcoders, layer_L/width_W/average_l0_N/params.npz):
//    the residual SAEs' npz layout (W_enc, W_dec, b_enc, b_dec, threshold), JumpReLU, reading
//    blocks.L.ln2.hook_normalized and predicting blocks.L.hook_mlp_out (SAE-Lens's gemma_2_transcoder loader).
//    The file cannot tell itself apart from a residual SAE: which it is comes from the option that names it;
//  - Gemma Scope 2 transcoders (transcoder/ or transcoder_all/layer_L_width_W_l0_X[_affine]/params.safetensors):
//    w_enc, w_dec, b_enc, b_dec, threshold and, in the _affine folders, affine_skip_connection [d_in, d_out]
//    (kept here transposed, as SAE-Lens's gemma_3 loader keeps it, in W_skip's [d_out, d_in]).
// The input hook must be the MLP's normalised input of the layer the transcoder is given for (ln2.hook_normalized,
// mlp.hook_in, or hook_mlp_in as SAE-Lens's Gemma Scope 2 loader names pre_feedforward_layernorm's output) and the
// output hook that layer's hook_mlp_out (for Gemma, after the post-feedforward norm: what TransformerLens and
// Gemma Scope call the MLP's output).
#pragma once

#include <torch/torch.h>

#include <string>

#include "saetraj/sae/sae.h"
#include "saetraj/sae/sae_source.h"

namespace saetraj::sae {

struct Transcoder {
  // The encoder as an Sae (cfg, w_enc, b_enc, threshold; b_dec is zero and never subtracted), so that encoding
  // runs the sweep's own SAE code. encoder.cfg.hook_name_out names the output hook.
  Sae encoder;
  int64_t d_out = 0;
  torch::Tensor w_dec;   // [d_sae, d_out]
  torch::Tensor b_dec;   // [d_out]
  torch::Tensor w_skip;  // [d_out, d_in]; undefined when the transcoder has no skip term

  const SaeConfig& cfg() const { return encoder.cfg; }
  bool has_skip() const { return w_skip.defined(); }
  // Feature activations of MLP inputs [rows, d_in] -> [rows, d_sae] (float32).
  torch::Tensor encode(const torch::Tensor& x) const;
  // acts W_dec + b_dec: [rows, d_sae] -> [rows, d_out].
  torch::Tensor decode(const torch::Tensor& acts) const;
  // x W_skip^T, zeros without a skip term: [rows, d_in] -> [rows, d_out].
  torch::Tensor skip(const torch::Tensor& x) const;
  // The transcoder's prediction of the MLP output: decode(encode(x)) + skip(x).
  torch::Tensor forward(const torch::Tensor& x) const;
  int64_t bytes() const;
};

// The configuration of the transcoder at `path` (cfg and tensor headers only), assigned to model layer `layer`
// (a Gemma Scope path without a layer_L component takes it). Throws InputError when the file is not a
// transcoder (a residual SAE, say) and unless it reads the MLP input of `layer` and predicts its hook_mlp_out
// (require_mlp_transcoder); `layer` < 0 skips the layer check.
SaeConfig read_transcoder_config(const std::string& path, int layer, const SaeSourceOptions& options = {});
// Loads it, every shape checked against d_in, d_sae and d_out.
Transcoder load_transcoder(const std::string& path, int layer, const SaeSourceOptions& options = {});

// The hook check described above; the message names the file, the hooks found and those expected.
void require_mlp_transcoder(const SaeConfig& cfg, int layer);

}  // namespace saetraj::sae
