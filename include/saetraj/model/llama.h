// The Llama-style decoder, shared by Llama (LlamaForCausalLM, Llama-3.x; src/model/llama.cpp), Qwen2
// (src/model/qwen2.cpp) and Qwen3 (src/model/qwen3.cpp): grouped-query attention with RoPE (llama3 frequency
// scaling when config.json asks for it), RMSNorm with weight w, optional per-head RMSNorm on queries and keys
// (Qwen3), SwiGLU MLP, optional q/k/v, o and MLP biases, tied or untied unembedding, as in transformers.
#pragma once

#include <memory>

#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/model/rope.h"

namespace saetraj::model {

struct LlamaParams : ArchParams {
  RopeParams rope;
  bool qkv_bias = false;  // q_proj, k_proj, v_proj biases (Llama attention_bias; always in Qwen2)
  bool o_bias = false;    // o_proj bias (Llama attention_bias)
  bool mlp_bias = false;  // gate, up and down biases (Llama mlp_bias)
  bool qk_norm = false;   // Qwen3: q_norm and k_norm (weight w) on every head before RoPE
};

std::unique_ptr<Model> load_llama_decoder(const ModelConfig& config, const io::SafetensorsSet& weights,
                                          const torch::Device& device);

}  // namespace saetraj::model
