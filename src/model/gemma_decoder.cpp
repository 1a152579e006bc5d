#include "saetraj/model/gemma2.h"

#include <cmath>
#include <limits>

#include "decoder_ops.h"
#include "saetraj/core/error.h"

namespace saetraj::model {
namespace {

// Hugging Face tensor names of Gemma-2, with {L} for the layer.
struct Gemma2Names {
  static constexpr const char* embed = "model.embed_tokens.weight";
  static constexpr const char* final_norm = "model.norm.weight";
  static constexpr const char* lm_head = "lm_head.weight";
  static constexpr const char* q = "model.layers.{L}.self_attn.q_proj.weight";
  static constexpr const char* k = "model.layers.{L}.self_attn.k_proj.weight";
  static constexpr const char* v = "model.layers.{L}.self_attn.v_proj.weight";
  static constexpr const char* o = "model.layers.{L}.self_attn.o_proj.weight";
  static constexpr const char* input_norm = "model.layers.{L}.input_layernorm.weight";
  static constexpr const char* post_attn_norm = "model.layers.{L}.post_attention_layernorm.weight";
  static constexpr const char* pre_ff_norm = "model.layers.{L}.pre_feedforward_layernorm.weight";
  static constexpr const char* post_ff_norm = "model.layers.{L}.post_feedforward_layernorm.weight";
  static constexpr const char* gate = "model.layers.{L}.mlp.gate_proj.weight";
  static constexpr const char* up = "model.layers.{L}.mlp.up_proj.weight";
  static constexpr const char* down = "model.layers.{L}.mlp.down_proj.weight";
};

std::string layer_name(const char* pattern, int layer) {
  std::string s = pattern;
  s.replace(s.find("{L}"), 3, std::to_string(layer));
  return s;
}

// Norm scales are stored as (1 + w) once, so every use is one multiplication.
struct Gemma2Block {
  torch::Tensor q, k, v, o;  // HF Linear layout [out, in]
  torch::Tensor input_scale, post_attn_scale, pre_ff_scale, post_ff_scale;
  torch::Tensor gate, up, down;
  torch::Tensor w_o;  // o^T viewed [n_heads, head_dim, d_model]
};

torch::Tensor soft_cap(const torch::Tensor& x, double cap) {
  return cap > 0 ? torch::tanh(x / cap) * cap : x;
}

class Gemma2Model final : public Model {
 public:
  Gemma2Model(const ModelConfig& config, const io::SafetensorsSet& weights, const torch::Device& device)
      : config_(config), device_(device) {
    const int64_t d = config.d_model, v = config.vocab_size, m = config.d_mlp;
    const int64_t h = config.n_heads, kv = config.n_kv_heads, hd = config.head_dim;
    SAETRAJ_CHECK(config.activation == "gelu_pytorch_tanh" || config.activation == "gelu_new" ||
                      config.activation == "gelu",
                  InputError, "Gemma-2 hidden_activation \"", config.activation,
                  "\" is not supported (gelu_pytorch_tanh, gelu_new, gelu)");
    if (config_.query_pre_attn_scalar <= 0) config_.query_pre_attn_scalar = static_cast<double>(hd);
    auto load = [&](const std::string& name, std::vector<int64_t> shape) {
      return weights.load(name, shape, torch::kFloat32).to(device);
    };
    auto scale = [&](const std::string& name) { return load(name, {d}) + 1.0f; };
    embed_ = load(Gemma2Names::embed, {v, d});
    final_scale_ = scale(Gemma2Names::final_norm);
    unembed_ = !config.tie_word_embeddings && weights.contains(Gemma2Names::lm_head)
                   ? load(Gemma2Names::lm_head, {v, d})
                   : embed_;
    for (int l = 0; l < config.n_layers; ++l) {
      Gemma2Block b;
      auto ld = [&](const char* pattern, std::vector<int64_t> shape) {
        return load(layer_name(pattern, l), shape);
      };
      b.q = ld(Gemma2Names::q, {h * hd, d});
      b.k = ld(Gemma2Names::k, {kv * hd, d});
      b.v = ld(Gemma2Names::v, {kv * hd, d});
      b.o = ld(Gemma2Names::o, {d, h * hd});
      b.input_scale = scale(layer_name(Gemma2Names::input_norm, l));
      b.post_attn_scale = scale(layer_name(Gemma2Names::post_attn_norm, l));
      b.pre_ff_scale = scale(layer_name(Gemma2Names::pre_ff_norm, l));
      b.post_ff_scale = scale(layer_name(Gemma2Names::post_ff_norm, l));
      b.gate = ld(Gemma2Names::gate, {m, d});
      b.up = ld(Gemma2Names::up, {m, d});
      b.down = ld(Gemma2Names::down, {d, m});
      b.w_o = b.o.t().contiguous().view({h, hd, d});
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
    // transformers multiplies by sqrt(hidden_size) rounded to the compute dtype (float32 here).
    const float normalizer = static_cast<float>(std::sqrt(static_cast<double>(config_.d_model)));
    torch::Tensor x = embed_.index_select(0, id_tensor) * normalizer;
    const auto rope = ops::rope_tables(config_, n, device_);
    const auto full_mask = ops::attention_mask(n, 0, device_);
    const auto sliding_mask = ops::attention_mask(n, config_.sliding_window, device_);
    const double scaling = 1.0 / std::sqrt(config_.query_pre_attn_scalar);
    ForwardCapture out;
    out.layers.resize(config_.n_layers);
    for (int l = 0; l < config_.n_layers; ++l) {
      const Gemma2Block& b = blocks_[l];
      LayerCapture& cap = out.layers[l];
      if (capture[l]) cap.resid_pre = x.clone();
      const auto normed = ops::rms_norm(x, b.input_scale, config_.norm_eps);
      auto heads = [&](const torch::Tensor& w, int64_t count) {
        return torch::matmul(normed, w.t()).view({n, count, hd}).transpose(0, 1);
      };
      const auto q = ops::apply_rope(heads(b.q, h), rope);
      const auto k = ops::apply_rope(heads(b.k, kv), rope);
      const auto v = heads(b.v, kv).contiguous();
      auto scores = soft_cap(torch::matmul(q, ops::expand_kv(k, h).transpose(1, 2)) * scaling,
                             config_.attn_logit_softcap);
      scores.masked_fill_(gemma2_layer_is_sliding(l) ? sliding_mask : full_mask,
                          -std::numeric_limits<float>::infinity());
      const auto pattern = torch::softmax(scores, -1);
      const auto z = torch::matmul(pattern, ops::expand_kv(v, h)).transpose(0, 1).reshape({n, h * hd});
      x = x + ops::rms_norm(torch::matmul(z, b.o.t()), b.post_attn_scale, config_.norm_eps);
      if (capture[l]) {
        cap.resid_mid = x.clone();
        cap.pattern = pattern.contiguous();
        cap.values = v;
      }
      const auto ff_in = ops::rms_norm(x, b.pre_ff_scale, config_.norm_eps);
      const auto gate = torch::matmul(ff_in, b.gate.t());
      const auto act = config_.activation == "gelu" ? torch::gelu(gate) : torch::gelu(gate, "tanh");
      const auto mlp = torch::matmul(act * torch::matmul(ff_in, b.up.t()), b.down.t());
      x = x + ops::rms_norm(mlp, b.post_ff_scale, config_.norm_eps);
      if (capture[l]) cap.resid_post = x.clone();
    }
    out.logits = readout(x);
    return out;
  }

  torch::Tensor head_outputs(int layer, const torch::Tensor& values) const override {
    // [h, n, hd] x [h, hd, d] -> [h, n, d], each query head with its group's values.
    return torch::bmm(ops::expand_kv(values, config_.n_heads), blocks_.at(layer).w_o);
  }
  torch::Tensor attention_output_bias(int) const override { return {}; }
  torch::Tensor post_attention(int layer, const torch::Tensor& x) const override {
    return ops::rms_norm(x, blocks_.at(layer).post_attn_scale, config_.norm_eps);
  }
  bool has_post_attention_norm() const override { return true; }
  PostAttentionNorm post_attention_norm(int layer) const override {
    return {true, blocks_.at(layer).post_attn_scale, config_.norm_eps};
  }
  torch::Tensor readout(const torch::Tensor& resid) const override {
    const auto normed = ops::rms_norm(resid, final_scale_, config_.norm_eps);
    return soft_cap(torch::matmul(normed, unembed_.t()), config_.final_logit_softcap);
  }

 private:
  ModelConfig config_;
  torch::Device device_;  // where the weights live and the forward pass runs
  torch::Tensor embed_, final_scale_, unembed_;
  std::vector<Gemma2Block> blocks_;
};

}  // namespace

std::unique_ptr<Model> load_gemma2(const ModelConfig& config, const io::SafetensorsSet& weights,
                                  const torch::Device& device) {
  return std::make_unique<Gemma2Model>(config, weights, device);
}

}  // namespace saetraj::model
