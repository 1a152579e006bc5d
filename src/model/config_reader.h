// Reading config.json fields with messages that name the file and the field: the one place the
// architectures' parsers (src/model/<arch>.cpp) take their hyper-parameters from.
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "saetraj/core/error.h"
#include "saetraj/core/json_number.h"
#include "saetraj/model/config.h"
#include "saetraj/model/rope.h"

namespace saetraj::model {

class ConfigReader {
 public:
  // `path` is how fields of this object are named in messages ("" at the top, "text_config." inside).
  ConfigReader(const nlohmann::json& j, std::string origin, std::string path = "")
      : j_(j), origin_(std::move(origin)), path_(std::move(path)) {}

  const std::string& origin() const { return origin_; }
  std::string field(const char* key) const { return path_ + key; }
  // Present and not null.
  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const nlohmann::json& raw(const char* key) const { return j_.at(key); }
  // The object under `key`, or nullopt when it is absent or null; anything else is a FormatError.
  std::optional<ConfigReader> child(const char* key) const {
    if (!has(key)) return std::nullopt;
    SAETRAJ_CHECK(j_.at(key).is_object(), FormatError, origin_, ": field \"", field(key),
                  "\" must be an object, got ", j_.at(key).dump());
    return ConfigReader(j_.at(key), origin_, field(key) + ".");
  }

  template <typename T>
  T required(const char* key) const {
    SAETRAJ_CHECK(has(key), FormatError, origin_, ": missing field \"", field(key), "\"");
    return get<T>(key);
  }
  template <typename T>
  T optional(const char* key, T fallback) const {
    return has(key) ? get<T>(key) : fallback;
  }
  // The first element when the field is a list (eos_token_id may be one), nullopt when absent or unusable.
  std::optional<int32_t> token(const char* key) const {
    if (!j_.contains(key)) return std::nullopt;
    const nlohmann::json& v = j_.at(key);
    if (json_fits<int32_t>(v)) return v.get<int32_t>();
    if (v.is_array() && !v.empty() && json_fits<int32_t>(v[0])) return v[0].get<int32_t>();
    return std::nullopt;
  }

 private:
  template <typename T>
  T get(const char* key) const {
    const nlohmann::json& v = j_.at(key);
    if (!json_fits<T>(v)) {
      throw FormatError(str(origin_, ": field \"", field(key), "\" must be an integer in range, got ", v.dump()));
    }
    try {
      return v.get<T>();
    } catch (const nlohmann::json::exception&) {
      throw FormatError(str(origin_, ": field \"", field(key), "\" has the wrong type (", v.type_name(), ")"));
    }
  }

  const nlohmann::json& j_;
  std::string origin_;
  std::string path_;
};

// Far above any real checkpoint, low enough that products of two sizes fit in 64 bits and that nothing
// sized by the config (per-layer tables, rotary tables over the context) can exhaust memory.
inline constexpr int64_t kMaxConfigSize = int64_t{1} << 24;

// A FormatError naming `key` unless 0 < value <= kMaxConfigSize.
void check_size(int64_t value, const char* key, const std::string& origin);

// The sizes every Hugging Face decoder after GPT-2 names the same way (hidden_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, intermediate_size, vocab_size,
// max_position_embeddings, rms_norm_eps, bos/eos_token_id). Required fields are refused when absent unless
// `defaults` gives them (Gemma-3's text_config leaves transformers' defaults out); tie_word_embeddings and
// activation are left to the caller. The number of layers is checked here, so that parsers can size
// per-layer tables by it.
void read_decoder_sizes(const ConfigReader& j, ModelConfig& c, const ModelConfig* defaults = nullptr);

// One RoPE settings object (a transformers 5 rope_parameters, or a transformers 4 rope_scaling), on top of
// `base`; a rope_type outside `supported` is an InputError naming the field and `arch` ("Llama").
RopeParams read_rope_object(const ConfigReader& rope, RopeParams base, std::initializer_list<const char*> supported,
                            const char* arch);

// The RoPE settings of a decoder with one rotary table, from either transformers generation (NOTE in
// config_reader.cpp): rope_parameters, or a top-level rope_theta with an optional rope_scaling.
RopeParams read_rope(const ConfigReader& j, std::initializer_list<const char*> supported, const char* arch,
                     double default_theta = 10000.0);

}  // namespace saetraj::model
