#include "saetraj/model/config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "saetraj/core/error.h"
#include "saetraj/core/json_number.h"

namespace saetraj::model {

using nlohmann::json;

const char* arch_name(Arch arch) {
  switch (arch) {
    case Arch::GPT2: return "GPT2LMHeadModel";
    case Arch::GEMMA2: return "Gemma2ForCausalLM";
    case Arch::LLAMA: return "LlamaForCausalLM";
  }
  return "?";
}

namespace {

template <typename T>
T required(const json& j, const char* key, const std::string& origin) {
  SAETRAJ_CHECK(j.contains(key), FormatError, origin, ": missing field \"", key, "\"");
  try {
    if (!json_fits<T>(j.at(key))) {
      throw FormatError(str(origin, ": field \"", key, "\" must be an integer in range, got ", j.at(key).dump()));
    }
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw FormatError(str(origin, ": field \"", key, "\" has the wrong type (", j.at(key).type_name(), ")"));
  }
}

template <typename T>
T optional_field(const json& j, const char* key, T fallback, const std::string& origin) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  try {
    if (!json_fits<T>(j.at(key))) {
      throw FormatError(str(origin, ": field \"", key, "\" must be an integer in range, got ", j.at(key).dump()));
    }
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw FormatError(str(origin, ": field \"", key, "\" has the wrong type (", j.at(key).type_name(), ")"));
  }
}

std::optional<int32_t> optional_token(const json& j, const char* key) {
  if (!j.contains(key)) return std::nullopt;
  const json& v = j.at(key);
  if (json_fits<int32_t>(v)) return v.get<int32_t>();
  if (v.is_array() && !v.empty() && json_fits<int32_t>(v[0])) return v[0].get<int32_t>();
  return std::nullopt;
}

// Far above any real checkpoint, low enough that products of two sizes fit in 64 bits and that nothing
// sized by the config (per-layer tables, rotary tables over the context) can exhaust memory.
constexpr int64_t kMaxSize = int64_t{1} << 24;

void check_positive(int64_t value, const char* key, const std::string& origin) {
  SAETRAJ_CHECK(value > 0, FormatError, origin, ": field \"", key, "\" must be positive, got ", value);
  SAETRAJ_CHECK(value <= kMaxSize, FormatError, origin, ": field \"", key, "\" is ", value,
                ", above the limit of ", kMaxSize, "; the config is corrupt");
}

}  // namespace

ModelConfig ModelConfig::from_json_text(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw FormatError(str(origin, ": not valid JSON (", e.what(), ")"));
  }
  SAETRAJ_CHECK(j.is_object(), FormatError, origin, ": expected a JSON object");

  ModelConfig c;
  std::string architecture;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    architecture = j["architectures"][0].get<std::string>();
  }
  c.model_type = optional_field<std::string>(j, "model_type", "", origin);
  if (architecture == "GPT2LMHeadModel" || (architecture.empty() && c.model_type == "gpt2")) {
    c.arch = Arch::GPT2;
  } else if (architecture == "Gemma2ForCausalLM" || (architecture.empty() && c.model_type == "gemma2")) {
    c.arch = Arch::GEMMA2;
  } else if (architecture == "LlamaForCausalLM" || (architecture.empty() && c.model_type == "llama")) {
    c.arch = Arch::LLAMA;
  } else {
    throw InputError(str(origin, ": unsupported architecture \"",
                         architecture.empty() ? c.model_type : architecture,
                         "\"; supported: GPT2LMHeadModel, Gemma2ForCausalLM, LlamaForCausalLM"));
  }

  if (c.arch == Arch::GPT2) {
    c.d_model = required<int64_t>(j, "n_embd", origin);
    c.n_layers = required<int64_t>(j, "n_layer", origin);
    c.n_heads = required<int64_t>(j, "n_head", origin);
    c.n_kv_heads = c.n_heads;
    c.vocab_size = required<int64_t>(j, "vocab_size", origin);
    c.n_ctx = optional_field<int64_t>(j, "n_positions", optional_field<int64_t>(j, "n_ctx", 1024, origin), origin);
    c.d_mlp = optional_field<int64_t>(j, "n_inner", 0, origin);  // null or absent: 4 x d_model, set below
    c.norm_eps = optional_field<double>(j, "layer_norm_epsilon", 1e-5, origin);
    c.activation = optional_field<std::string>(j, "activation_function", "gelu_new", origin);
    c.tie_word_embeddings = optional_field<bool>(j, "tie_word_embeddings", true, origin);
    SAETRAJ_CHECK(c.activation == "gelu_new" || c.activation == "gelu" || c.activation == "relu", InputError,
                  origin, ": activation_function \"", c.activation, "\" is not supported (gelu_new, gelu, relu)");
  } else {
    c.d_model = required<int64_t>(j, "hidden_size", origin);
    c.n_layers = required<int64_t>(j, "num_hidden_layers", origin);
    c.n_heads = required<int64_t>(j, "num_attention_heads", origin);
    c.n_kv_heads = optional_field<int64_t>(j, "num_key_value_heads", c.n_heads, origin);
    c.vocab_size = required<int64_t>(j, "vocab_size", origin);
    c.d_mlp = required<int64_t>(j, "intermediate_size", origin);
    c.n_ctx = optional_field<int64_t>(j, "max_position_embeddings", 8192, origin);
    c.norm_eps = optional_field<double>(j, "rms_norm_eps", 1e-6, origin);
    c.head_dim = optional_field<int64_t>(j, "head_dim", 0, origin);
    // [NOTE] Two generations of RoPE fields. transformers 4 (the files on the Hub) writes a top-level
    // rope_theta and, for scaled RoPE, a rope_scaling object; transformers 5 writes one rope_parameters
    // object holding rope_theta, rope_type and the scaling fields, and no top-level rope_theta. Reading only
    // the first would silently run a re-saved Llama-3 with theta 10000 and no llama3 scaling.
    const json* rope = nullptr;
    const char* rope_field = "";  // where the RoPE fields came from, for messages
    for (const char* field : {"rope_parameters", "rope_scaling"}) {
      if (!rope && j.contains(field) && j[field].is_object()) {
        rope = &j[field];
        rope_field = field;
      }
    }
    c.rope_theta = optional_field<double>(j, "rope_theta", 10000.0, origin);
    if (rope) {
      c.rope_theta = optional_field<double>(*rope, "rope_theta", c.rope_theta, origin);
      c.rope_type = optional_field<std::string>(
          *rope, "rope_type", optional_field<std::string>(*rope, "type", "default", origin), origin);
    }
    c.tie_word_embeddings =
        optional_field<bool>(j, "tie_word_embeddings", c.arch == Arch::GEMMA2, origin);
    if (c.arch == Arch::GEMMA2) {
      c.activation = optional_field<std::string>(
          j, "hidden_activation", optional_field<std::string>(j, "hidden_act", "gelu_pytorch_tanh", origin), origin);
      c.attn_logit_softcap = optional_field<double>(j, "attn_logit_softcapping", 0.0, origin);
      c.final_logit_softcap = optional_field<double>(j, "final_logit_softcapping", 0.0, origin);
      c.query_pre_attn_scalar = optional_field<double>(j, "query_pre_attn_scalar", 0.0, origin);
      c.sliding_window = optional_field<int64_t>(j, "sliding_window", 0, origin);
      SAETRAJ_CHECK(c.rope_type == "default", InputError, origin, ": ", rope_field, " type \"", c.rope_type,
                    "\" is not supported for Gemma-2 (default)");
      // transformers 5 spells the attention kind of each layer out; saetraj runs Gemma-2's fixed pattern
      // (sliding on even layers), so a config that says otherwise is refused rather than run differently.
      if (j.contains("layer_types") && j["layer_types"].is_array()) {
        const json& types = j["layer_types"];
        for (size_t l = 0; l < types.size(); ++l) {
          const std::string expected = l % 2 == 0 ? "sliding_attention" : "full_attention";
          SAETRAJ_CHECK(types[l].is_string() && types[l].get<std::string>() == expected, InputError, origin,
                        ": layer_types[", l, "] is ", types[l].dump(), "; Gemma-2 is supported with \"", expected,
                        "\" there (sliding window on even layers)");
        }
      }
    } else {
      c.activation = optional_field<std::string>(j, "hidden_act", "silu", origin);
      c.attention_bias = optional_field<bool>(j, "attention_bias", false, origin);
      c.mlp_bias = optional_field<bool>(j, "mlp_bias", false, origin);
      if (rope) {
        const json& rs = *rope;
        SAETRAJ_CHECK(c.rope_type == "llama3" || c.rope_type == "default", InputError, origin,
                      ": ", rope_field, " type \"", c.rope_type, "\" is not supported (llama3, default)");
        c.rope_factor = optional_field<double>(rs, "factor", 1.0, origin);
        c.rope_low_freq_factor = optional_field<double>(rs, "low_freq_factor", 1.0, origin);
        c.rope_high_freq_factor = optional_field<double>(rs, "high_freq_factor", 4.0, origin);
        c.rope_original_max_position =
            optional_field<int64_t>(rs, "original_max_position_embeddings", 8192, origin);
      }
    }
  }
  c.bos_token_id = optional_token(j, "bos_token_id");
  c.eos_token_id = optional_token(j, "eos_token_id");

  check_positive(c.d_model, "hidden size", origin);
  if (c.arch == Arch::GPT2 && c.d_mlp == 0) c.d_mlp = 4 * c.d_model;
  check_positive(c.n_layers, "number of layers", origin);
  check_positive(c.n_heads, "number of heads", origin);
  check_positive(c.n_kv_heads, "number of key/value heads", origin);
  check_positive(c.vocab_size, "vocab_size", origin);
  check_positive(c.d_mlp, "MLP size", origin);
  check_positive(c.n_ctx, "context length", origin);
  if (c.head_dim == 0) {
    SAETRAJ_CHECK(c.d_model % c.n_heads == 0, FormatError, origin, ": hidden size ", c.d_model,
                  " is not divisible by the number of heads ", c.n_heads);
    c.head_dim = c.d_model / c.n_heads;
  }
  check_positive(c.head_dim, "head_dim", origin);
  SAETRAJ_CHECK(c.n_heads % c.n_kv_heads == 0, FormatError, origin, ": number of heads ", c.n_heads,
                " is not a multiple of the number of key/value heads ", c.n_kv_heads);
  return c;
}

ModelConfig ModelConfig::from_folder(const std::string& folder) {
  const std::string path = folder + "/config.json";
  std::ifstream in(path);
  SAETRAJ_CHECK(in.good(), IoError, "cannot open ", path, " (is '", folder, "' a Hugging Face checkpoint folder?)");
  std::stringstream text;
  text << in.rdbuf();
  return from_json_text(text.str(), path);
}

int64_t weight_bytes(const ModelConfig& c) {
  const int64_t attention = c.d_model * c.head_dim * (2 * c.n_heads + 2 * c.n_kv_heads);
  const int64_t mlp = c.d_model * c.d_mlp * (c.arch == Arch::GPT2 ? 2 : 3);
  const int64_t embeddings = c.vocab_size * c.d_model * (c.tie_word_embeddings ? 1 : 2) + c.n_ctx * c.d_model;
  return 4 * (embeddings + c.n_layers * (attention + mlp));
}

}  // namespace saetraj::model
