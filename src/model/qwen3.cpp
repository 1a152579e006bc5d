// Qwen3 (Qwen3ForCausalLM): the Llama-style decoder (saetraj/model/llama.h) with a per-head RMSNorm on queries
// and keys, q/k/v/o biases when attention_bias is set, tied or untied unembedding.
#include "config_reader.h"
#include "qwen_common.h"
#include "saetraj/model/architecture.h"
#include "saetraj/model/llama.h"

namespace saetraj::model {
namespace {

void parse_qwen3(const ConfigReader& j, ModelConfig& c) {
  read_decoder_sizes(j, c);
  c.head_dim = j.optional<int64_t>("head_dim", 128);  // transformers' default, not hidden_size / heads
  c.activation = j.optional<std::string>("hidden_act", "silu");
  c.tie_word_embeddings = j.optional<bool>("tie_word_embeddings", false);
  auto p = std::make_shared<LlamaParams>();
  p->rope = read_rope(j, {"default"}, "Qwen3");
  p->qkv_bias = p->o_bias = j.optional<bool>("attention_bias", false);
  p->qk_norm = true;
  refuse_qwen_sliding_window(j, "Qwen3");
  c.arch_params = std::move(p);
}

}  // namespace

extern const Architecture kQwen3Architecture{"Qwen3ForCausalLM", "qwen3", &parse_qwen3, &load_llama_decoder};

}  // namespace saetraj::model
