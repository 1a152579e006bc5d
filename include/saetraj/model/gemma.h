// Gemma-2 (Gemma2ForCausalLM): embeddings scaled by sqrt(d_model), four RMSNorms (1 + w) per block,
// grouped-query attention with RoPE, attention-logit soft-capping, sliding-window attention on even
// layers, gated GELU-tanh MLP, tied unembedding and final-logit soft-capping, as in transformers.
#pragma once

#include <memory>

#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"

namespace saetraj::model {

std::unique_ptr<Model> load_gemma2(const ModelConfig& config, const io::SafetensorsSet& weights,
                                  const torch::Device& device);

// Whether transformers' Gemma-2 uses sliding-window attention on `layer` (even layers: 0, 2, ...).
inline bool gemma2_layer_is_sliding(int layer) { return layer % 2 == 0; }

}  // namespace saetraj::model
