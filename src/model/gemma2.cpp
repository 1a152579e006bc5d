// Gemma-2 (Gemma2ForCausalLM, gemma-2-2b / 9b / 27b): its config.json, read into the Gemma decoder's
// parameters (saetraj/model/gemma.h). Sliding-window attention on even layers, one RoPE table, attention and
// final logit soft-caps.
#include "config_reader.h"
#include "saetraj/model/architecture.h"
#include "saetraj/model/gemma.h"

namespace saetraj::model {
namespace {

void parse_gemma2(const ConfigReader& j, ModelConfig& c) {
  read_decoder_sizes(j, c);
  c.activation = j.optional<std::string>("hidden_activation", j.optional<std::string>("hidden_act", "gelu_pytorch_tanh"));
  c.tie_word_embeddings = j.optional<bool>("tie_word_embeddings", true);
  auto p = std::make_shared<GemmaParams>();
  p->attn_logit_softcap = j.optional<double>("attn_logit_softcapping", 0.0);
  p->final_logit_softcap = j.optional<double>("final_logit_softcapping", 0.0);
  p->query_pre_attn_scalar = j.optional<double>("query_pre_attn_scalar", 0.0);
  p->sliding_window = j.optional<int64_t>("sliding_window", 0);
  p->rope_global = read_rope(j, {"default"}, "Gemma-2");
  p->rope_local = p->rope_global;
  SAETRAJ_CHECK(!j.optional<bool>("attention_bias", false), InputError, j.origin(),
                ": attention_bias true is not supported for Gemma-2 (transformers' checkpoints have none)");
  // transformers 5 spells the attention kind of each layer out; saetraj runs Gemma-2's fixed pattern
  // (sliding on even layers), so a config that says otherwise is refused rather than run differently.
  if (j.has("layer_types") && j.raw("layer_types").is_array()) {
    const auto& types = j.raw("layer_types");
    for (size_t l = 0; l < types.size(); ++l) {
      const std::string expected = gemma2_layer_is_sliding(static_cast<int>(l)) ? "sliding_attention" : "full_attention";
      SAETRAJ_CHECK(types[l].is_string() && types[l].get<std::string>() == expected, InputError, j.origin(),
                    ": layer_types[", l, "] is ", types[l].dump(), "; Gemma-2 is supported with \"", expected,
                    "\" there (sliding window on even layers)");
    }
  }
  for (int64_t l = 0; l < c.n_layers; ++l) p->sliding.push_back(gemma2_layer_is_sliding(static_cast<int>(l)));
  c.arch_params = std::move(p);
}

std::unique_ptr<Model> load_gemma2(const ModelConfig& config, const io::SafetensorsSet& weights,
                                   const torch::Device& device) {
  return load_gemma_decoder(config, weights, device, "model.");
}

}  // namespace

extern const Architecture kGemma2Architecture{"Gemma2ForCausalLM", "gemma2", &parse_gemma2, &load_gemma2};

}  // namespace saetraj::model
