// A sparse autoencoder as the sweep uses it: only what encoding needs (W_enc, b_enc, b_dec, threshold)
// plus the preprocessing its training implied. W_dec is never loaded.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

namespace saetraj::sae {

enum class Activation { ReLU, JumpReLU, TopK };
// ConstantScalarRescale multiplies every input by one fixed factor (SaeConfig::input_scale); loaders fold it
// into W_enc and b_dec (fold_input_scale), so at run time it costs nothing, like ExpectedAverageOnlyIn.
enum class Normalization { None, LayerNorm, ConstantNormRescale, ExpectedAverageOnlyIn, ConstantScalarRescale };
// Where an SAE reads the model. Only the residual stream (pre, mid, post) fits the method; the others are
// recognised so that a wrong file gets a message saying what it is (require_residual_hook).
enum class HookKind { ResidPre, ResidMid, ResidPost, AttnOut, HookZ, MlpOut, MlpIn, Other };

const char* activation_name(Activation a);
const char* normalization_name(Normalization n);
// "resid_post", "attn_out", "hook_z", ... as shown by `saetraj info`.
const char* hook_kind_name(HookKind k);

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
  std::string format;                 // "sae-lens", "gemma-scope", "gemma-scope-2", "llama-scope", "sparsify"
  std::string architecture;           // as the file names it ("gated", "batchtopk", ...), for messages and info
  std::string hook_name_out;          // a transcoder's output hook; empty for an SAE
  double input_scale = 1.0;           // ConstantScalarRescale: the factor (folded into W_enc at load)
  bool rescale_by_decoder_norm = false;  // topk/batchtopk: pre-activations times |W_dec row| (folded at load)
  std::vector<std::string> folded;    // what the loader folded into W_enc/b_enc/threshold, for the record

  bool is_transcoder() const { return !hook_name_out.empty(); }

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

// Hook layer and kind from a TransformerLens hook name ("blocks.12.hook_resid_post", "blocks.3.attn.hook_z",
// "blocks.3.ln2.hook_normalized" = the MLP's input).
void parse_hook_name(const std::string& hook_name, int* layer, HookKind* kind);

// Throws InputError unless the SAE reads the residual stream: an attention-output, hook_z or MLP SAE, or a
// transcoder, gets a message saying what it is and why the method cannot use it. An unrecognised hook name
// passes (the layer check that follows names it).
void require_residual_hook(const SaeConfig& cfg);

// [NOTE] Folding at load
// Several saved forms are exact re-parametrisations of the three activations the sweep kernels implement
// (ReLU, JumpReLU, TopK on x W_enc + b_enc), so loaders rewrite them once instead of teaching every kernel
// (CPU and GPU, direct and factored) a new kind:
//  - a constant input factor s (constant_scalar_rescale, Llama Scope's dataset-wise norm): (s x - b_dec) W =
//    x (s W) - (b_dec / s)(s W), so W_enc *= s and b_dec /= s;
//  - per-feature factors n_i on the pre-activations (topk's rescale_acts_by_decoder_norm, n_i = |W_dec[i]|):
//    W_enc[:, i] *= n_i and b_enc[i] *= n_i;
//  - gated: gate (x W + b_gate)_i > 0 and magnitude ReLU(x W e^r + b_mag)_i. With W' = W e^r, b' = b_mag the
//    gate is pre'_i > b_mag_i - e^r_i b_gate_i =: theta_i, so the SAE is JumpReLU(W', b', theta) whenever
//    theta_i >= 0; where theta_i < 0 the ReLU decides alone, and JumpReLU with theta_i < 0 does the same.
// The activations equal the original ones up to float rounding (the tests hold them to the unfolded
// formulas); only a pre-activation within rounding of a gate can land on the other side.
void fold_input_scale(Sae& sae, double scale);
void fold_feature_scale(Sae& sae, const torch::Tensor& per_feature);

}  // namespace saetraj::sae
