// The Gemma decoder, shared by Gemma-2 (Gemma2ForCausalLM, src/model/gemma2.cpp) and Gemma-3
// (Gemma3ForCausalLM and the text model of Gemma3ForConditionalGeneration, src/model/gemma3.cpp):
// embeddings scaled by sqrt(d_model), four RMSNorms (1 + w) per block, grouped-query attention with RoPE,
// optional per-head (1 + w) RMSNorm on queries and keys (Gemma-3), optional attention-logit soft-capping,
// sliding-window attention on the layers the config names (each kind with its own RoPE table), gated
// GELU-tanh MLP, tied unembedding and optional final-logit soft-capping, as in transformers.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/model/rope.h"

namespace saetraj::model {

struct GemmaParams : ArchParams {
  double attn_logit_softcap = 0.0;     // 0 = off
  double final_logit_softcap = 0.0;    // 0 = off
  double query_pre_attn_scalar = 0.0;  // scores scaled by this^-0.5 (0 = head_dim)
  int64_t sliding_window = 0;          // 0 = off
  std::vector<bool> sliding;           // per layer: sliding-window attention (else full attention)
  RopeParams rope_global;              // RoPE of the full-attention layers
  RopeParams rope_local;               // RoPE of the sliding layers (Gemma-2: the same as rope_global)
  bool qk_norm = false;                // Gemma-3: q_norm and k_norm on every head before RoPE
};

// Builds a Gemma decoder whose tensors are named `prefix` + "embed_tokens.weight", `prefix` +
// "layers.{L}...", `prefix` + "norm.weight" (prefix "model." for the causal-LM classes), with an unembedding
// `lm_head` read only when the config unties the embeddings and the checkpoint has it.
std::unique_ptr<Model> load_gemma_decoder(const ModelConfig& config, const io::SafetensorsSet& weights,
                                          const torch::Device& device, const std::string& prefix,
                                          const std::string& lm_head = "lm_head.weight");

// Whether transformers' Gemma-2 uses sliding-window attention on `layer` (even layers: 0, 2, ...).
inline bool gemma2_layer_is_sliding(int layer) { return layer % 2 == 0; }

}  // namespace saetraj::model
