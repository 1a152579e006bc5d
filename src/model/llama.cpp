#include "saetraj/model/llama.h"

#include <cmath>
#include <limits>

#include "config_reader.h"
#include "decoder_ops.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/model/architecture.h"

namespace saetraj::model {
namespace {

// Hugging Face tensor names of Llama, Qwen2 and Qwen3, with {L} for the layer. Biases exist only where
// LlamaParams says so, q_norm and k_norm only in Qwen3.
struct LlamaNames {
  static constexpr const char* embed = "model.embed_tokens.weight";
  static constexpr const char* final_norm = "model.norm.weight";
  static constexpr const char* lm_head = "lm_head.weight";
  static constexpr const char* q = "model.layers.{L}.self_attn.q_proj.";
  static constexpr const char* k = "model.layers.{L}.self_attn.k_proj.";
  static constexpr const char* v = "model.layers.{L}.self_attn.v_proj.";
  static constexpr const char* o = "model.layers.{L}.self_attn.o_proj.";
  static constexpr const char* q_norm = "model.layers.{L}.self_attn.q_norm.weight";
  static constexpr const char* k_norm = "model.layers.{L}.self_attn.k_norm.weight";
  static constexpr const char* input_norm = "model.layers.{L}.input_layernorm.weight";
  static constexpr const char* post_attn_norm = "model.layers.{L}.post_attention_layernorm.weight";
  static constexpr const char* gate = "model.layers.{L}.mlp.gate_proj.";
  static constexpr const char* up = "model.layers.{L}.mlp.up_proj.";
  static constexpr const char* down = "model.layers.{L}.mlp.down_proj.";
};

// An HF Linear: weight [out, in], bias [out] or undefined.
struct Linear {
  torch::Tensor w, b;
  torch::Tensor operator()(const torch::Tensor& x) const {
    return b.defined() ? torch::addmm(b, x, w.t()) : torch::matmul(x, w.t());
  }
};

struct LlamaBlock {
  Linear q, k, v, o, gate, up, down;
  torch::Tensor input_norm, post_attn_norm;
  torch::Tensor q_norm, k_norm;  // [head_dim], Qwen3 only
  torch::Tensor w_o;  // o.w^T viewed [n_heads, head_dim, d_model]
};

class LlamaModel final : public Model {
 public:
  LlamaModel(const ModelConfig& config, const io::SafetensorsSet& weights, const torch::Device& device)
      : config_(config), params_(config.params<LlamaParams>()), device_(device) {
    SAETRAJ_CHECK(config.activation == "silu", InputError, arch_name(config.arch), " hidden_act \"",
                  config.activation, "\" is not supported (silu)");
    const int64_t d = config.d_model, v = config.vocab_size, m = config.d_mlp;
    const int64_t h = config.n_heads, kv = config.n_kv_heads, hd = config.head_dim;
    auto load = [&](const std::string& name, std::vector<int64_t> shape) {
      return weights.load(name, shape, torch::kFloat32).to(device);
    };
    embed_ = load(LlamaNames::embed, {v, d});
    final_norm_ = load(LlamaNames::final_norm, {d});
    if (config.tie_word_embeddings) {
      unembed_ = embed_;
    } else {
      SAETRAJ_CHECK(weights.contains(LlamaNames::lm_head), FormatError,
                    "config.json says tie_word_embeddings is false"
                    " but the checkpoint has no tensor '",
                    LlamaNames::lm_head, "'");
      unembed_ = load(LlamaNames::lm_head, {v, d});
    }
    for (int l = 0; l < config.n_layers; ++l) {
      auto linear = [&](const char* pattern, int64_t out, int64_t in, bool bias) {
        const std::string prefix = layer_name(pattern, l);
        return Linear{load(prefix + "weight", {out, in}),
                      bias ? load(prefix + "bias", {out}) : torch::Tensor()};
      };
      LlamaBlock b;
      b.q = linear(LlamaNames::q, h * hd, d, params_.qkv_bias);
      b.k = linear(LlamaNames::k, kv * hd, d, params_.qkv_bias);
      b.v = linear(LlamaNames::v, kv * hd, d, params_.qkv_bias);
      b.o = linear(LlamaNames::o, d, h * hd, params_.o_bias);
      b.gate = linear(LlamaNames::gate, m, d, params_.mlp_bias);
      b.up = linear(LlamaNames::up, m, d, params_.mlp_bias);
      b.down = linear(LlamaNames::down, d, m, params_.mlp_bias);
      if (params_.qk_norm) {
        b.q_norm = load(layer_name(LlamaNames::q_norm, l), {hd});
        b.k_norm = load(layer_name(LlamaNames::k_norm, l), {hd});
      }
      b.input_norm = load(layer_name(LlamaNames::input_norm, l), {d});
      b.post_attn_norm = load(layer_name(LlamaNames::post_attn_norm, l), {d});
      b.w_o = b.o.w.t().contiguous().view({h, hd, d});
      blocks_.push_back(std::move(b));
    }
  }

  const ModelConfig& config() const override { return config_; }

  ForwardCapture forward(const std::vector<int32_t>& ids,
                         const std::vector<int>& capture_layers) const override {
    c10::InferenceMode guard;
    const std::vector<bool> capture = check_forward_input(config_, ids, capture_layers);
    const int64_t n = static_cast<int64_t>(ids.size());

    const int64_t h = config_.n_heads, kv = config_.n_kv_heads, hd = config_.head_dim;
    const auto id_tensor = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).to(device_);
    torch::Tensor x = embed_.index_select(0, id_tensor);
    const auto rope = ops::rope_tables(params_.rope, hd, n, device_);
    const auto mask = ops::attention_mask(n, 0, device_);
    const double scaling = 1.0 / std::sqrt(static_cast<double>(hd));
    ForwardCapture out;
    out.layers.resize(config_.n_layers);
    for (int l = 0; l < config_.n_layers; ++l) {
      const LlamaBlock& b = blocks_[l];
      LayerCapture& cap = out.layers[l];
      if (capture[l]) cap.resid_pre = x.clone();
      const auto normed = ops::rms_norm(x, b.input_norm, config_.norm_eps);
      auto heads = [&](const Linear& proj, int64_t count) {
        return proj(normed).view({n, count, hd}).transpose(0, 1);
      };
      auto q = heads(b.q, h), k = heads(b.k, kv);
      if (params_.qk_norm) {
        q = ops::rms_norm(q, b.q_norm, config_.norm_eps);
        k = ops::rms_norm(k, b.k_norm, config_.norm_eps);
      }
      q = ops::apply_rope(q, rope);
      k = ops::apply_rope(k, rope);
      const auto v = heads(b.v, kv).contiguous();
      auto scores = torch::matmul(q, ops::expand_kv(k, h).transpose(1, 2)) * scaling;
      scores.masked_fill_(mask, -std::numeric_limits<float>::infinity());
      const auto pattern = torch::softmax(scores, -1);
      const auto z = torch::matmul(pattern, ops::expand_kv(v, h)).transpose(0, 1).reshape({n, h * hd});
      x = x + b.o(z);
      if (capture[l]) {
        cap.resid_mid = x.clone();
        cap.pattern = pattern.contiguous();
        cap.values = v;
      }
      const auto ff_in = ops::rms_norm(x, b.post_attn_norm, config_.norm_eps);
      if (capture[l]) cap.mlp_in = ff_in;
      x = x + b.down(torch::silu(b.gate(ff_in)) * b.up(ff_in));
      if (capture[l]) cap.resid_post = x.clone();
    }
    out.logits = readout(x);
    return out;
  }

  torch::Tensor head_outputs(int layer, const torch::Tensor& values) const override {
    return torch::bmm(ops::expand_kv(values, config_.n_heads), blocks_.at(layer).w_o);
  }
  torch::Tensor attention_output_bias(int layer) const override { return blocks_.at(layer).o.b; }
  torch::Tensor post_attention(int, const torch::Tensor& x) const override { return x; }
  bool has_post_attention_norm() const override { return false; }
  torch::Tensor readout(const torch::Tensor& resid) const override {
    return torch::matmul(ops::rms_norm(resid, final_norm_, config_.norm_eps), unembed_.t());
  }

 private:
  ModelConfig config_;
  LlamaParams params_;
  torch::Device device_;  // where the weights live and the forward pass runs
  torch::Tensor embed_, final_norm_, unembed_;
  std::vector<LlamaBlock> blocks_;
};

}  // namespace

std::unique_ptr<Model> load_llama_decoder(const ModelConfig& config, const io::SafetensorsSet& weights,
                                          const torch::Device& device) {
  return std::make_unique<LlamaModel>(config, weights, device);
}

namespace {

void parse_llama(const ConfigReader& j, ModelConfig& c) {
  read_decoder_sizes(j, c);
  c.activation = j.optional<std::string>("hidden_act", "silu");
  c.tie_word_embeddings = j.optional<bool>("tie_word_embeddings", false);
  auto p = std::make_shared<LlamaParams>();
  p->rope = read_rope(j, {"llama3", "default"}, "Llama");
  p->qkv_bias = p->o_bias = j.optional<bool>("attention_bias", false);
  p->mlp_bias = j.optional<bool>("mlp_bias", false);
  c.arch_params = std::move(p);
}

}  // namespace

extern const Architecture kLlamaArchitecture{"LlamaForCausalLM", "llama", &parse_llama, &load_llama_decoder};

}  // namespace saetraj::model
