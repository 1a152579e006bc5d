// A sparse autoencoder as the sweep uses it: only what encoding needs (W_enc, b_enc, b_dec, threshold)
// plus the preprocessing its training implied. W_dec is never loaded.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>

namespace saetraj::sae {

enum class Activation { ReLU, JumpReLU, TopK };
enum class Normalization { None, LayerNorm, ConstantNormRescale, ExpectedAverageOnlyIn };
enum class HookKind { ResidPre, ResidMid, ResidPost, Other };

const char* activation_name(Activation a);
const char* normalization_name(Normalization n);

struct SaeConfig {
  std::string id;                     // a readable identity: neuronpedia id, else the folder
  std::string source;                 // folder or file it came from
  std::string hook_name;              // e.g. "blocks.8.hook_resid_pre"
  int hook_layer = -1;                // layer parsed from hook_name (-1 if none)
  HookKind hook_kind = HookKind::Other;
  int64_t d_in = 0;
  int64_t d_sae = 0;
  Activation activation = Activation::ReLU;
  int64_t topk_k = 0;                 // for Activation::TopK
  bool apply_b_dec_to_input = true;
  Normalization normalization = Normalization::None;
  bool center_residual = false;       // subtract each vector's mean over d_in first (TransformerLens
                                      // center_writing_weights)
  std::optional<bool> prepend_bos;    // as the SAE was trained
  std::string model_name;             // as given by the cfg
  std::string neuronpedia_id;         // "<modelId>/<sourceId>", empty if unknown

  // One line for the output file: "relu; b_dec subtracted; normalize=none; centred".
  std::string preprocessing_summary() const;
};

struct Sae {
  SaeConfig cfg;
  torch::Tensor w_enc;      // [d_in, d_sae]
  torch::Tensor b_enc;      // [d_sae]
  torch::Tensor b_dec;      // [d_in]
  torch::Tensor threshold;  // [d_sae] for JumpReLU, undefined otherwise

  // The input transformation applied to every vector before W_enc: centring, normalisation, b_dec.
  torch::Tensor preprocess(const torch::Tensor& x) const;
  // x @ W_enc in float32 for rows [rows, d_in] -> [rows, d_sae], whatever W_enc's storage: a bfloat16 W_enc
  // (sweep --sae-dtype bfloat16) is widened a block of columns at a time, never whole.
  torch::Tensor project(const torch::Tensor& x) const;
  // The same product written into `out` ([rows, d_sae] float32, contiguous), so that a caller encoding chunk
  // after chunk reuses one buffer instead of paying fresh pages (and their faults) for every chunk.
  void project_into(const torch::Tensor& x, torch::Tensor& out) const;
  // Pre-activations of preprocessed rows [rows, d_in] -> [rows, d_sae].
  torch::Tensor pre_activations(const torch::Tensor& preprocessed) const;
  // The activation function on pre-activations, in place where possible.
  torch::Tensor activate(torch::Tensor pre) const;
  // Feature activations of raw rows [rows, d_in] -> [rows, d_sae].
  torch::Tensor encode(const torch::Tensor& x) const;

  int64_t bytes() const;  // memory held by the tensors
  // Moves the tensors to `device` (a rank's GPU), keeping their dtypes.
  void to(const torch::Device& device);
};

// Hook layer and kind from a TransformerLens hook name ("blocks.12.hook_resid_post").
void parse_hook_name(const std::string& hook_name, int* layer, HookKind* kind);

}  // namespace saetraj::sae
