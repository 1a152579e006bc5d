#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/gemma2.h"
#include "saetraj/model/gpt2.h"
#include "saetraj/model/llama.h"
#include "saetraj/model/model.h"

namespace saetraj::model {

torch::Tensor PostAttentionNorm::apply(const torch::Tensor& x) const {
  if (!enabled) return x;
  const auto x32 = x.to(torch::kFloat32);
  return x32 * torch::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps) * weight;
}

std::unique_ptr<Model> load_model(const std::string& folder) {
  return with_context(str("while loading the model from ", folder), [&]() -> std::unique_ptr<Model> {
    const ModelConfig config = ModelConfig::from_folder(folder);
    const io::SafetensorsSet weights = io::SafetensorsSet::open_folder(folder);
    switch (config.arch) {
      case Arch::GPT2: return load_gpt2(config, weights);
      case Arch::GEMMA2: return load_gemma2(config, weights);
      case Arch::LLAMA: return load_llama(config, weights);
    }
    throw InputError(str("architecture ", arch_name(config.arch), " has no loader"));
  });
}

}  // namespace saetraj::model
