// Qwen2 / Qwen2.5 (Qwen2ForCausalLM): the Llama-style decoder (saetraj/model/llama.h) with biases on q, k and
// v (none on o), tied or untied unembedding.
#include "config_reader.h"
#include "qwen_common.h"
#include "saetraj/model/architecture.h"
#include "saetraj/model/llama.h"

namespace saetraj::model {
namespace {

void parse_qwen2(const ConfigReader& j, ModelConfig& c) {
  read_decoder_sizes(j, c);
  c.activation = j.optional<std::string>("hidden_act", "silu");
  c.tie_word_embeddings = j.optional<bool>("tie_word_embeddings", false);
  auto p = std::make_shared<LlamaParams>();
  p->rope = read_rope(j, {"default"}, "Qwen2");
  p->qkv_bias = true;
  refuse_qwen_sliding_window(j, "Qwen2");
  c.arch_params = std::move(p);
}

}  // namespace

extern const Architecture kQwen2Architecture{"Qwen2ForCausalLM", "qwen2", &parse_qwen2, &load_llama_decoder};

}  // namespace saetraj::model
