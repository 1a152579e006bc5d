// Gemma-3: Gemma3ForCausalLM (gemma-3-270m, gemma-3-1b) and the text model inside Gemma3ForConditionalGeneration
// checkpoints (gemma-3-4b/12b/27b; the vision tower and projector are not loaded). Read into the Gemma decoder's
// parameters (saetraj/model/gemma.h) as transformers 5.18 defines Gemma3TextConfig: per-head q/k norms,
// sliding and full layers in the config's pattern, a RoPE table per layer kind (local base frequency on sliding
// layers; RoPE scaling, e.g. linear x8 on the 4b+, on full layers only), soft-caps only when configured.
// Fields transformers leaves out of a saved config.json (equal to its defaults) take those defaults.
#include "config_reader.h"
#include "saetraj/model/architecture.h"
#include "saetraj/model/gemma.h"

namespace saetraj::model {
namespace {

// Gemma3TextConfig's defaults (transformers 5.18, configuration_gemma3.py).
ModelConfig text_defaults() {
  ModelConfig d;
  d.vocab_size = 262208;
  d.d_model = 2304;
  d.d_mlp = 9216;
  d.n_layers = 26;
  d.n_heads = 8;
  d.n_kv_heads = 4;
  d.head_dim = 256;
  d.n_ctx = 131072;
  d.norm_eps = 1e-6;
  d.bos_token_id = 2;
  d.eos_token_id = 1;
  return d;
}
constexpr double kQueryPreAttnScalar = 256, kGlobalTheta = 1e6, kLocalTheta = 1e4;
constexpr int64_t kSlidingWindow = 4096, kSlidingWindowPattern = 6;

// The per-layer kinds: layer_types when given, else transformers' rule from sliding_window_pattern (every
// pattern-th layer full, the others sliding).
std::vector<bool> layer_kinds(const ConfigReader& j, int64_t n_layers) {
  std::vector<bool> sliding;
  if (j.has("layer_types")) {
    const auto& types = j.raw("layer_types");
    SAETRAJ_CHECK(types.is_array() && static_cast<int64_t>(types.size()) == n_layers, FormatError, j.origin(),
                  ": field \"", j.field("layer_types"), "\" must list one kind per layer (", n_layers, "), got ",
                  types.dump());
    for (size_t l = 0; l < types.size(); ++l) {
      SAETRAJ_CHECK(types[l] == "sliding_attention" || types[l] == "full_attention", InputError, j.origin(), ": ",
                    j.field("layer_types"), "[", l, "] is ", types[l].dump(),
                    "; Gemma-3 layers are \"sliding_attention\" or \"full_attention\"");
      sliding.push_back(types[l] == "sliding_attention");
    }
    return sliding;
  }
  const int64_t pattern = j.optional<int64_t>("sliding_window_pattern", kSlidingWindowPattern);
  check_size(pattern, "sliding_window_pattern", j.origin());
  for (int64_t l = 0; l < n_layers; ++l) sliding.push_back((l + 1) % pattern != 0);
  return sliding;
}

// [NOTE] Gemma-3's two RoPE tables in both transformers generations. transformers 4 (the files on the Hub)
// writes rope_theta (full layers), rope_local_base_freq (sliding layers) and rope_scaling, which applies to
// the full layers only. transformers 5 writes rope_parameters with one object per layer kind
// ({"full_attention": {...}, "sliding_attention": {...}}).
void read_gemma3_rope(const ConfigReader& j, GemmaParams& p) {
  RopeParams global, local;
  global.theta = j.optional<double>("rope_theta", kGlobalTheta);
  local.theta = j.optional<double>("rope_local_base_freq", kLocalTheta);
  const std::initializer_list<const char*> supported = {"default", "linear"};
  if (const auto rope = j.child("rope_parameters")) {
    const bool per_kind = rope->has("full_attention") || rope->has("sliding_attention");
    SAETRAJ_CHECK(per_kind, FormatError, j.origin(), ": field \"", j.field("rope_parameters"),
                  "\" must hold \"full_attention\" and \"sliding_attention\" objects for Gemma-3");
    if (const auto full = rope->child("full_attention")) global = read_rope_object(*full, global, supported, "Gemma-3");
    if (const auto slide = rope->child("sliding_attention")) local = read_rope_object(*slide, local, supported, "Gemma-3");
  } else if (const auto scaling = j.child("rope_scaling")) {
    global = read_rope_object(*scaling, global, supported, "Gemma-3");
  }
  p.rope_global = global;
  p.rope_local = local;
}

// Reads the text model's fields from `j` (the top level of a Gemma3ForCausalLM config, or text_config).
void parse_text_config(const ConfigReader& j, ModelConfig& c) {
  const ModelConfig defaults = text_defaults();
  read_decoder_sizes(j, c, &defaults);
  c.activation = j.optional<std::string>("hidden_activation", j.optional<std::string>("hidden_act", "gelu_pytorch_tanh"));
  c.tie_word_embeddings = j.optional<bool>("tie_word_embeddings", true);
  auto p = std::make_shared<GemmaParams>();
  p->attn_logit_softcap = j.optional<double>("attn_logit_softcapping", 0.0);
  p->final_logit_softcap = j.optional<double>("final_logit_softcapping", 0.0);
  p->query_pre_attn_scalar = j.optional<double>("query_pre_attn_scalar", kQueryPreAttnScalar);
  p->sliding_window = j.optional<int64_t>("sliding_window", kSlidingWindow);
  p->sliding = layer_kinds(j, c.n_layers);
  p->qk_norm = true;
  read_gemma3_rope(j, *p);
  SAETRAJ_CHECK(!j.optional<bool>("attention_bias", false), InputError, j.origin(), ": ",
                j.field("attention_bias"), " true is not supported for Gemma-3 (released checkpoints have none)");
  SAETRAJ_CHECK(!j.optional<bool>("use_bidirectional_attention", false), InputError, j.origin(), ": ",
                j.field("use_bidirectional_attention"),
                " true (an embedding model, not causal) is not supported: the method needs a causal model");
  c.arch_params = std::move(p);
}

void parse_gemma3(const ConfigReader& j, ModelConfig& c) { parse_text_config(j, c); }

// Gemma3ForConditionalGeneration: the text model's fields are under text_config (model_type "gemma3_text");
// special tokens may sit at the top level instead.
void parse_gemma3_multimodal(const ConfigReader& j, ModelConfig& c) {
  const auto text = j.child("text_config");
  SAETRAJ_CHECK(text.has_value(), FormatError, j.origin(), ": missing field \"text_config\" (the language model of a ",
                "Gemma3ForConditionalGeneration checkpoint)");
  parse_text_config(*text, c);
  if (!text->has("bos_token_id") && j.has("bos_token_id")) c.bos_token_id = j.token("bos_token_id");
  if (!text->has("eos_token_id") && j.has("eos_token_id")) c.eos_token_id = j.token("eos_token_id");
}

std::unique_ptr<Model> load_gemma3(const ModelConfig& config, const io::SafetensorsSet& weights,
                                   const torch::Device& device) {
  return load_gemma_decoder(config, weights, device, "model.");
}

// transformers 5 saves the language model under "model.language_model."; the checkpoints on the Hub (saved by
// transformers 4) under "language_model.model.", with the lm_head (if any) at "language_model.lm_head.".
std::unique_ptr<Model> load_gemma3_multimodal(const ModelConfig& config, const io::SafetensorsSet& weights,
                                              const torch::Device& device) {
  for (const char* prefix : {"model.language_model.", "language_model.model."}) {
    if (weights.contains(std::string(prefix) + "embed_tokens.weight")) {
      const bool v4 = std::string(prefix) == "language_model.model.";
      return load_gemma_decoder(config, weights, device, prefix, v4 ? "language_model.lm_head.weight" : "lm_head.weight");
    }
  }
  throw FormatError(str("Gemma3ForConditionalGeneration checkpoint has no tensor "
                        "'model.language_model.embed_tokens.weight' or 'language_model.model.embed_tokens.weight'"));
}

}  // namespace

extern const Architecture kGemma3Architecture{"Gemma3ForCausalLM", "gemma3_text", &parse_gemma3, &load_gemma3};
extern const Architecture kGemma3MultimodalArchitecture{"Gemma3ForConditionalGeneration", "gemma3",
                                                        &parse_gemma3_multimodal, &load_gemma3_multimodal};

}  // namespace saetraj::model
