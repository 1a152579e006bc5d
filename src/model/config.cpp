#include "saetraj/model/config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "config_reader.h"
#include "saetraj/core/error.h"
#include "saetraj/model/architecture.h"

namespace saetraj::model {

using nlohmann::json;

const char* arch_name(const Architecture* arch) { return arch ? arch->hf_class : "?"; }

namespace {

void check_positive(int64_t value, const char* key, const std::string& origin) { check_size(value, key, origin); }

// What holds for every architecture once its parser has run.
void check_common(ModelConfig& c, const std::string& origin) {
  check_positive(c.d_model, "hidden size", origin);
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
  const ConfigReader reader(j, origin);

  std::string architecture;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    architecture = j["architectures"][0].get<std::string>();
  }
  ModelConfig c;
  c.model_type = reader.optional<std::string>("model_type", "");
  c.arch = find_architecture(architecture, c.model_type);
  SAETRAJ_CHECK(c.arch != nullptr, InputError, origin, ": unsupported architecture \"",
                architecture.empty() ? c.model_type : architecture, "\"; supported: ", supported_architectures());
  c.arch->parse(reader, c);
  check_common(c, origin);
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
  const int64_t mlp = c.d_model * c.d_mlp * c.mlp_matrices;
  const int64_t embeddings = c.vocab_size * c.d_model * (c.tie_word_embeddings ? 1 : 2) +
                             (c.learned_positions ? c.n_ctx * c.d_model : 0);
  return 4 * (embeddings + c.n_layers * (attention + mlp));
}

}  // namespace saetraj::model
