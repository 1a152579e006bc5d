// Gemma Scope SAEs as released: one params.npz per SAE (W_enc [d_model, W], W_dec [W, d_model], b_enc [W],
// b_dec [d_model], threshold [W]; float32), in a tree layer_L/width_W/average_l0_X/. They are JumpReLU
// SAEs on blocks.L.hook_resid_post, used without b_dec subtraction or any normalisation.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "saetraj/sae/sae.h"

namespace saetraj::sae {

struct GemmaScopeOptions {
  // Neuronpedia model id, the first half of the SAE id "<model_id>/<L>-gemmascope-res-<width>".
  std::string model_id = "gemma-2-2b";
  // The layer, when the path has no "layer_L" component to read it from.
  std::optional<int> layer;
};

// Whether `path` is a params.npz file or a folder that holds one.
bool is_gemma_scope(const std::string& path);

// Reads the array headers only (cheap). `path` is params.npz or its folder. The layer comes from the
// path's "layer_L" component (or options.layer), the width label from "width_W" (or from d_sae). The npz of a
// transcoder is laid out as an SAE's; one under a folder named for the transcoder release
// ("gemma-scope-2b-pt-transcoders", or "models--google--gemma-scope-2b-pt-transcoders" in a Hugging Face
// cache) is read as the transcoder it is (make_gemma_scope_transcoder), so that --sae refuses it.
SaeConfig read_gemma_scope_config(const std::string& path, const GemmaScopeOptions& options = {});

// Loads W_enc, b_enc, b_dec and threshold (never W_dec) and checks every shape against d_model and W.
Sae load_gemma_scope(const std::string& path, const GemmaScopeOptions& options = {});

// Makes a Gemma Scope 1 configuration that of a transcoder of its layer's MLP, as SAE-Lens's gemma_2_transcoder
// loader reads google/gemma-scope-2b-pt-transcoders: reads blocks.L.ln2.hook_normalized, predicts
// blocks.L.hook_mlp_out, architecture jumprelu_transcoder, Neuronpedia id "<model>/L-gemmascope-transcoder-W".
// Does nothing to one that already is.
void make_gemma_scope_transcoder(SaeConfig& c);

// What every Gemma Scope SAE (releases 1 and 2) is, read off its encoder's shape `w_enc_shape` ([d_model,
// width]; anything else is refused naming `file` and `w_enc_what`, e.g. "array 'W_enc'"): JumpReLU without
// b_dec subtraction, normalisation or centring, trained on sequences that start with <bos>; source `file`,
// `format`, `architecture` and model name `model_id`. The hook and the ids are left to the caller.
SaeConfig gemma_scope_jumprelu_config(const std::string& file, const std::string& format,
                                      const std::string& architecture, const std::string& w_enc_what,
                                      const std::vector<int64_t>& w_enc_shape, const std::string& model_id);

// The label Gemma Scope gives a width: 16384 -> "16k", 65536 -> "65k", 1048576 -> "1m", 512 -> "512".
std::string gemma_scope_width_label(int64_t d_sae);

}  // namespace saetraj::sae
