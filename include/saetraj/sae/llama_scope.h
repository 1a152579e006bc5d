// Llama Scope SAEs (fnlp/Llama3_1-8B-Base-LX{R,A,M,TC}-{8,32}x) as released: one folder per SAE,
// Llama3_1-8B-Base-L<L><R|A|M|TC>-<E>x/, holding hyperparams.json and checkpoints/final.safetensors
// (encoder.weight [d_sae, d_model], encoder.bias [d_sae], decoder.weight [d_model, d_sae], decoder.bias
// [d_model]; nn.Linear layout).
//
// Encoding, as SAE-Lens loads these files: with norm_activation "dataset-wise" the input is scaled by
// s = sqrt(d_model) / dataset_average_activation_norm.in, and the scalar jump_relu_threshold is scaled by the
// same s: pre = s x W + b_enc, a feature is active where pre > s * jump_relu_threshold. (An SAE-Lens version
// that scaled the input but not the threshold made the features far too dense.) b_dec is subtracted only
// when apply_decoder_bias_to_pre_encoder is true; "token-wise" normalisation is constant_norm_rescale.
#pragma once

#include <string>

#include "saetraj/sae/sae.h"

namespace saetraj::sae {

// Whether `path` is a folder with hyperparams.json (and so, a Llama Scope SAE).
bool is_llama_scope(const std::string& path);

// Reads hyperparams.json and the tensor headers (cheap).
SaeConfig read_llama_scope_config(const std::string& folder);

// Loads the encoder (W_enc = encoder.weight transposed) and decoder.bias, with the input scale folded into
// W_enc (sae.h, [NOTE] Folding at load) and the threshold scaled by it; refuses a non-residual hook.
Sae load_llama_scope(const std::string& folder);

}  // namespace saetraj::sae
