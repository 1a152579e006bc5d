// A causal language model as the method sees it: one forward pass that captures, per layer, what the
// decomposition of the attention output needs, plus the pieces of the model the method applies again
// (per-head output projection, post-attention norm, readout).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "saetraj/model/config.h"

namespace saetraj::model {

// Activations of one block for a sequence of N tokens (float32, on the compute device).
struct LayerCapture {
  torch::Tensor resid_pre;   // [N, d_model] residual entering the block
  torch::Tensor resid_mid;   // [N, d_model] after the attention sub-block (post-norm included)
  torch::Tensor resid_post;  // [N, d_model] after the MLP sub-block
  torch::Tensor mlp_in;      // [N, d_model] the MLP's input: resid_mid after its norm (GPT-2 ln_2, Llama/Qwen
                             // post_attention_layernorm, Gemma pre_feedforward_layernorm); what transcoders read
  torch::Tensor pattern;     // [n_heads, N, N] attention probabilities A_h[q, j]
  torch::Tensor values;      // [n_kv_heads, N, head_dim] value vectors, value bias included
};

struct ForwardCapture {
  std::vector<LayerCapture> layers;  // indexed by model layer; empty entries for layers not captured
  torch::Tensor logits;              // [N, vocab] final logits
};

// The norm a model applies to the attention output before it joins the residual (Gemma-2's
// post_attention_layernorm), as data: ranks that do not hold the model apply it to partial sums.
struct PostAttentionNorm {
  bool enabled = false;
  torch::Tensor weight;  // [d_model] effective multiplier (Gemma: 1 + w)
  double eps = 1e-6;
  // RMS norm over the last dimension, computed in float32; identity when disabled.
  torch::Tensor apply(const torch::Tensor& x) const;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;

  // Runs the model once over `ids`, capturing the layers in `capture_layers` (all when empty).
  virtual ForwardCapture forward(const std::vector<int32_t>& ids, const std::vector<int>& capture_layers) const = 0;

  // v_h[j] @ W_O[h] for every query head h (grouped-query heads use their group's values):
  // [n_heads, N, d_model], from `values` [n_kv_heads, N, head_dim].
  virtual torch::Tensor head_outputs(int layer, const torch::Tensor& values) const = 0;
  // The attention output bias b_O [d_model], or an undefined tensor when the architecture has none.
  virtual torch::Tensor attention_output_bias(int layer) const = 0;
  // The norm applied to the attention output before it joins the residual (Gemma-2), row-wise on
  // [rows, d_model]; identity for architectures without one.
  virtual torch::Tensor post_attention(int layer, const torch::Tensor& x) const = 0;
  virtual bool has_post_attention_norm() const = 0;
  // The same norm as data (disabled for architectures without one).
  virtual PostAttentionNorm post_attention_norm(int layer) const { return {}; }
  // Logits from a final-layer residual vector: final norm, unembedding, final soft-cap. [rows, vocab].
  virtual torch::Tensor readout(const torch::Tensor& resid) const = 0;
};

// Checks a forward pass's input against the config (non-empty, within the context, ids inside the
// vocabulary) and returns which layers to capture (all when `capture_layers` is empty). Shared by every
// architecture's forward().
std::vector<bool> check_forward_input(const ModelConfig& config, const std::vector<int32_t>& ids,
                                      const std::vector<int>& capture_layers);

// Loads a Hugging Face checkpoint folder (config.json + safetensors) as float32, onto `device` (where its
// forward pass then runs and its captures live).
std::unique_ptr<Model> load_model(const std::string& folder, const torch::Device& device = torch::kCPU);

}  // namespace saetraj::model
