// Hyper-parameters of a checkpoint, read from its config.json. One plain struct for every supported
// architecture; fields an architecture does not use keep their defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace saetraj::model {

enum class Arch { GPT2, GEMMA2, LLAMA };

const char* arch_name(Arch arch);  // "GPT2LMHeadModel", ...

struct ModelConfig {
  Arch arch = Arch::GPT2;
  std::string model_type;          // config.json "model_type" ("gpt2", "gemma2", "llama")
  int64_t d_model = 0;             // hidden size
  int64_t n_layers = 0;
  int64_t n_heads = 0;             // query heads
  int64_t n_kv_heads = 0;          // key/value heads (= n_heads without grouped-query attention)
  int64_t head_dim = 0;
  int64_t d_mlp = 0;               // MLP inner size
  int64_t vocab_size = 0;
  int64_t n_ctx = 0;               // longest sequence the positions allow
  double norm_eps = 1e-5;
  std::string activation = "gelu_new";
  bool tie_word_embeddings = true;
  std::optional<int32_t> bos_token_id;
  std::optional<int32_t> eos_token_id;
  // Gemma-2
  double attn_logit_softcap = 0.0;     // 0 = off
  double final_logit_softcap = 0.0;    // 0 = off
  double query_pre_attn_scalar = 0.0;  // scores scaled by this^-0.5 (0 = head_dim)
  int64_t sliding_window = 0;          // 0 = off
  // Rotary embeddings (Gemma-2, Llama)
  double rope_theta = 10000.0;
  std::string rope_type = "default";   // "default" or "llama3"
  double rope_factor = 1.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;
  bool attention_bias = false;         // Llama q/k/v/o biases
  bool mlp_bias = false;

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
