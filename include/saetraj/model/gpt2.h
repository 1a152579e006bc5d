// GPT-2 (GPT2LMHeadModel): learned positions, pre-LayerNorm blocks, Conv1D weights stored [in, out],
// fused c_attn, tied unembedding.
#pragma once

#include <memory>

#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"

namespace saetraj::model {

std::unique_ptr<Model> load_gpt2(const ModelConfig& config, const io::SafetensorsSet& weights,
                                  const torch::Device& device);

}  // namespace saetraj::model
