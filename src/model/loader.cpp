#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/architecture.h"
#include "saetraj/model/model.h"

namespace saetraj::model {

std::vector<bool> check_forward_input(const ModelConfig& config, const std::vector<int32_t>& ids,
                                      const std::vector<int>& capture_layers) {
  const int64_t n = static_cast<int64_t>(ids.size());
  SAETRAJ_CHECK(n > 0, InputError, "cannot run the model on an empty token sequence");
  SAETRAJ_CHECK(n <= config.n_ctx, InputError, "the prompt has ", n, " tokens but the model's context is ",
                config.n_ctx, " positions; shorten it (sweep --max-tokens)");
  for (int32_t id : ids) {
    SAETRAJ_CHECK(id >= 0 && id < config.vocab_size, InputError, "token id ", id,
                  " is outside the model's vocabulary [0, ", config.vocab_size, ")");
  }
  std::vector<bool> capture(config.n_layers, capture_layers.empty());
  for (int l : capture_layers) capture.at(l) = true;
  return capture;
}

std::unique_ptr<Model> load_model(const std::string& folder, const torch::Device& device) {
  return with_context(str("while loading the model from ", folder), [&]() -> std::unique_ptr<Model> {
    const ModelConfig config = ModelConfig::from_folder(folder);
    const io::SafetensorsSet weights = io::SafetensorsSet::open_folder(folder);
    return config.arch->load(config, weights, device);
  });
}

}  // namespace saetraj::model
