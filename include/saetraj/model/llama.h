// Llama (LlamaForCausalLM, Llama-3.x): grouped-query attention with RoPE (llama3 frequency scaling when
// config.json asks for it), RMSNorm with weight w, SwiGLU MLP, optional q/k/v/o and MLP biases, tied or
// untied unembedding, as in transformers.
#pragma once

#include <memory>

#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"

namespace saetraj::model {

std::unique_ptr<Model> load_llama(const ModelConfig& config, const io::SafetensorsSet& weights,
                                  const torch::Device& device);

}  // namespace saetraj::model
