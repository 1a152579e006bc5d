// Hyper-parameters of a checkpoint, read from its config.json. The fields every architecture has (sizes,
// norm epsilon, special tokens) are plain members; what only one architecture (or one family) uses lives in
// that architecture's own parameter struct (ArchParams), parsed by that architecture's own file. Which
// architecture a config.json is, and who parses and loads it, is a row of the registry (architecture.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <typeinfo>

#include "saetraj/core/error.h"

namespace saetraj::model {

struct Architecture;  // a row of the registry (architecture.h)

// "GPT2LMHeadModel", "Gemma3ForCausalLM", ...: the Hugging Face class name of the row, "?" for none.
const char* arch_name(const Architecture* arch);

// What one architecture (or a family sharing one decoder) reads beyond the common fields.
struct ArchParams {
  virtual ~ArchParams() = default;
};

struct ModelConfig {
  const Architecture* arch = nullptr;  // the registry row that parsed this config
  std::string model_type;          // config.json "model_type" ("gpt2", "gemma2", "gemma3_text", ...)
  int64_t d_model = 0;             // hidden size
  int64_t n_layers = 0;
  int64_t n_heads = 0;             // query heads
  int64_t n_kv_heads = 0;          // key/value heads (= n_heads without grouped-query attention)
  int64_t head_dim = 0;            // 0 while parsing: d_model / n_heads
  int64_t d_mlp = 0;               // MLP inner size
  int64_t vocab_size = 0;
  int64_t n_ctx = 0;               // longest sequence the positions allow
  double norm_eps = 1e-5;
  std::string activation;          // the MLP's activation, as config.json names it
  bool tie_word_embeddings = true;
  std::optional<int32_t> bos_token_id;
  std::optional<int32_t> eos_token_id;
  // For the memory plan only (weight_bytes).
  int mlp_matrices = 3;            // 2 for a plain MLP (GPT-2), 3 for a gated one
  bool learned_positions = false;  // a [n_ctx, d_model] position table (GPT-2)
  // The architecture's own hyper-parameters; read them with params<T>().
  std::shared_ptr<const ArchParams> arch_params;

  template <typename T>
  const T& params() const {
    const T* p = dynamic_cast<const T*>(arch_params.get());
    SAETRAJ_CHECK(p != nullptr, InputError, "the ", arch_name(arch), " config has no ", typeid(T).name(),
                  " hyper-parameters");
    return *p;
  }

  // Reads and validates `folder`/config.json: unsupported architectures and missing fields are errors
  // that name the file and the field.
  static ModelConfig from_folder(const std::string& folder);
  static ModelConfig from_json_text(const std::string& text, const std::string& origin);
};

// The float32 bytes of a model's weights as saetraj holds them (embeddings, untied unembedding, attention
// and MLP matrices; norms and biases are negligible), plus one prompt's activations are not counted: for
// the memory plan of rank 0's device.
int64_t weight_bytes(const ModelConfig& config);

}  // namespace saetraj::model
