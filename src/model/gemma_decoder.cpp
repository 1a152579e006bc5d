#include "saetraj/model/gemma.h"

#include <cmath>
#include <limits>

#include "decoder_ops.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::model {
namespace {

// Hugging Face tensor names of the Gemma decoders after the model prefix, with {L} for the layer. q_norm and
// k_norm exist only in Gemma-3.
struct GemmaNames {
  static constexpr const char* embed = "embed_tokens.weight";
  static constexpr const char* final_norm = "norm.weight";
  static constexpr const char* q = "layers.{L}.self_attn.q_proj.weight";
  static constexpr const char* k = "layers.{L}.self_attn.k_proj.weight";
  static constexpr const char* v = "layers.{L}.self_attn.v_proj.weight";
  static constexpr const char* o = "layers.{L}.self_attn.o_proj.weight";
  static constexpr const char* q_norm = "layers.{L}.self_attn.q_norm.weight";
  static constexpr const char* k_norm = "layers.{L}.self_attn.k_norm.weight";
  static constexpr const char* input_norm = "layers.{L}.input_layernorm.weight";
  static constexpr const char* post_attn_norm = "layers.{L}.post_attention_layernorm.weight";
  static constexpr const char* pre_ff_norm = "layers.{L}.pre_feedforward_layernorm.weight";
  static constexpr const char* post_ff_norm = "layers.{L}.post_feedforward_layernorm.weight";
  static constexpr const char* gate = "layers.{L}.mlp.gate_proj.weight";
  static constexpr const char* up = "layers.{L}.mlp.up_proj.weight";
  static constexpr const char* down = "layers.{L}.mlp.down_proj.weight";
};

// Norm scales are stored as (1 + w) once, so every use is one multiplication.
struct GemmaBlock {
  torch::Tensor q, k, v, o;  // HF Linear layout [out, in]
  torch::Tensor q_scale, k_scale;  // [head_dim], Gemma-3 only
  torch::Tensor input_scale, post_attn_scale, pre_ff_scale, post_ff_scale;
  torch::Tensor gate, up, down;
  torch::Tensor w_o;  // o^T viewed [n_heads, head_dim, d_model]
};

torch::Tensor soft_cap(const torch::Tensor& x, double cap) {
  return cap > 0 ? torch::tanh(x / cap) * cap : x;
}

class GemmaModel final : public Model {
 public:
  GemmaModel(const ModelConfig& config, const io::SafetensorsSet& weights, const torch::Device& device,
             const std::string& prefix, const std::string& lm_head)
      : config_(config), params_(config.params<GemmaParams>()), device_(device) {
    const int64_t d = config.d_model, v = config.vocab_size, m = config.d_mlp;
    const int64_t h = config.n_heads, kv = config.n_kv_heads, hd = config.head_dim;
    SAETRAJ_CHECK(config.activation == "gelu_pytorch_tanh" || config.activation == "gelu_new" ||
                      config.activation == "gelu",
                  InputError, arch_name(config.arch), " hidden_activation \"", config.activation,
                  "\" is not supported (gelu_pytorch_tanh, gelu_new, gelu)");
    SAETRAJ_CHECK(static_cast<int64_t>(params_.sliding.size()) == config.n_layers, InputError, arch_name(config.arch),
                  ": ", params_.sliding.size(), " layer kinds for ", config.n_layers, " layers");
    if (params_.query_pre_attn_scalar <= 0) params_.query_pre_attn_scalar = static_cast<double>(hd);
    auto load = [&](const std::string& name, std::vector<int64_t> shape) {
      return weights.load(name, shape, torch::kFloat32).to(device);
    };
    auto scale = [&](const std::string& name, int64_t size) { return load(name, {size}) + 1.0f; };
    embed_ = load(prefix + GemmaNames::embed, {v, d});
    final_scale_ = scale(prefix + GemmaNames::final_norm, d);
    unembed_ = !config.tie_word_embeddings && weights.contains(lm_head) ? load(lm_head, {v, d}) : embed_;
    for (int l = 0; l < config.n_layers; ++l) {
      GemmaBlock b;
      auto name = [&](const char* pattern) { return prefix + layer_name(pattern, l); };
      auto ld = [&](const char* pattern, std::vector<int64_t> shape) { return load(name(pattern), shape); };
      b.q = ld(GemmaNames::q, {h * hd, d});
      b.k = ld(GemmaNames::k, {kv * hd, d});
      b.v = ld(GemmaNames::v, {kv * hd, d});
      b.o = ld(GemmaNames::o, {d, h * hd});
      if (params_.qk_norm) {
        b.q_scale = scale(name(GemmaNames::q_norm), hd);
        b.k_scale = scale(name(GemmaNames::k_norm), hd);
      }
      b.input_scale = scale(name(GemmaNames::input_norm), d);
      b.post_attn_scale = scale(name(GemmaNames::post_attn_norm), d);
      b.pre_ff_scale = scale(name(GemmaNames::pre_ff_norm), d);
      b.post_ff_scale = scale(name(GemmaNames::post_ff_norm), d);
      b.gate = ld(GemmaNames::gate, {m, d});
      b.up = ld(GemmaNames::up, {m, d});
      b.down = ld(GemmaNames::down, {d, m});
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
    const auto rope_global = ops::rope_tables(params_.rope_global, hd, n, device_);
    const auto rope_local = ops::rope_tables(params_.rope_local, hd, n, device_);
    const auto full_mask = ops::attention_mask(n, 0, device_);
    const auto sliding_mask = ops::attention_mask(n, params_.sliding_window, device_);
    const double scaling = 1.0 / std::sqrt(params_.query_pre_attn_scalar);
    ForwardCapture out;
    out.layers.resize(config_.n_layers);
    for (int l = 0; l < config_.n_layers; ++l) {
      const GemmaBlock& b = blocks_[l];
      LayerCapture& cap = out.layers[l];
      if (capture[l]) cap.resid_pre = x.clone();
      const auto normed = ops::rms_norm(x, b.input_scale, config_.norm_eps);
      auto heads = [&](const torch::Tensor& w, int64_t count) {
        return torch::matmul(normed, w.t()).view({n, count, hd}).transpose(0, 1);
      };
      const bool sliding = params_.sliding[l];
      const auto& rope = sliding ? rope_local : rope_global;
      auto q = heads(b.q, h), k = heads(b.k, kv);
      if (params_.qk_norm) {
        q = ops::rms_norm(q, b.q_scale, config_.norm_eps);
        k = ops::rms_norm(k, b.k_scale, config_.norm_eps);
      }
      q = ops::apply_rope(q, rope);
      k = ops::apply_rope(k, rope);
      const auto v = heads(b.v, kv).contiguous();
      auto scores = soft_cap(torch::matmul(q, ops::expand_kv(k, h).transpose(1, 2)) * scaling,
                             params_.attn_logit_softcap);
      scores.masked_fill_(sliding ? sliding_mask : full_mask, -std::numeric_limits<float>::infinity());
      const auto pattern = torch::softmax(scores, -1);
      const auto z = torch::matmul(pattern, ops::expand_kv(v, h)).transpose(0, 1).reshape({n, h * hd});
      x = x + ops::rms_norm(torch::matmul(z, b.o.t()), b.post_attn_scale, config_.norm_eps);
      if (capture[l]) {
        cap.resid_mid = x.clone();
        cap.pattern = pattern.contiguous();
        cap.values = v;
      }
      const auto ff_in = ops::rms_norm(x, b.pre_ff_scale, config_.norm_eps);
      if (capture[l]) cap.mlp_in = ff_in;
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
    return soft_cap(torch::matmul(normed, unembed_.t()), params_.final_logit_softcap);
  }

 private:
  ModelConfig config_;
  GemmaParams params_;    // query_pre_attn_scalar resolved
  torch::Device device_;  // where the weights live and the forward pass runs
  torch::Tensor embed_, final_scale_, unembed_;
  std::vector<GemmaBlock> blocks_;
};

}  // namespace

std::unique_ptr<Model> load_gemma_decoder(const ModelConfig& config, const io::SafetensorsSet& weights,
                                          const torch::Device& device, const std::string& prefix,
                                          const std::string& lm_head) {
  return std::make_unique<GemmaModel>(config, weights, device, prefix, lm_head);
}

}  // namespace saetraj::model
