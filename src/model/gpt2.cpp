// GPT-2 (GPT2LMHeadModel): learned positions, pre-LayerNorm blocks, Conv1D weights stored [in, out],
// fused c_attn, tied unembedding.
#include <cmath>

#include "config_reader.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/model/architecture.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"

namespace saetraj::model {
namespace {

// Hugging Face tensor names of GPT-2, with {L} for the layer. Checkpoints saved from GPT2LMHeadModel
// prefix them with "transformer."; those saved from GPT2Model do not. Both are accepted.
struct Gpt2Names {
  static constexpr const char* wte = "wte.weight";
  static constexpr const char* wpe = "wpe.weight";
  static constexpr const char* ln_f_w = "ln_f.weight";
  static constexpr const char* ln_f_b = "ln_f.bias";
  static constexpr const char* ln_1_w = "h.{L}.ln_1.weight";
  static constexpr const char* ln_1_b = "h.{L}.ln_1.bias";
  static constexpr const char* c_attn_w = "h.{L}.attn.c_attn.weight";
  static constexpr const char* c_attn_b = "h.{L}.attn.c_attn.bias";
  static constexpr const char* c_proj_w = "h.{L}.attn.c_proj.weight";
  static constexpr const char* c_proj_b = "h.{L}.attn.c_proj.bias";
  static constexpr const char* ln_2_w = "h.{L}.ln_2.weight";
  static constexpr const char* ln_2_b = "h.{L}.ln_2.bias";
  static constexpr const char* fc_w = "h.{L}.mlp.c_fc.weight";
  static constexpr const char* fc_b = "h.{L}.mlp.c_fc.bias";
  static constexpr const char* fc_proj_w = "h.{L}.mlp.c_proj.weight";
  static constexpr const char* fc_proj_b = "h.{L}.mlp.c_proj.bias";
};

struct Gpt2Block {
  torch::Tensor ln_1_w, ln_1_b, c_attn_w, c_attn_b, c_proj_w, c_proj_b, ln_2_w, ln_2_b, fc_w, fc_b, fc_proj_w,
      fc_proj_b;
  torch::Tensor w_o;  // c_proj_w viewed [n_heads, head_dim, d_model]
};

class Gpt2Model final : public Model {
 public:
  Gpt2Model(const ModelConfig& config, const io::SafetensorsSet& weights, const torch::Device& device)
      : config_(config), device_(device) {
    const std::string prefix = weights.contains("transformer.wte.weight") ? "transformer." : "";
    SAETRAJ_CHECK(weights.contains(prefix + Gpt2Names::wte), FormatError,
                  "GPT-2 checkpoint has no tensor 'wte.weight' or 'transformer.wte.weight'");
    const int64_t d = config.d_model, v = config.vocab_size, m = config.d_mlp;
    auto load = [&](const std::string& name, std::vector<int64_t> shape) {
      return weights.load(prefix + name, shape, torch::kFloat32).to(device);
    };
    // Positions: accept a checkpoint with more rows than n_positions claims, use what config says.
    wte_ = load(Gpt2Names::wte, {v, d});
    const auto& wpe_info = weights.info(prefix + Gpt2Names::wpe);
    SAETRAJ_CHECK(wpe_info.shape.size() == 2 && wpe_info.shape[1] == d, FormatError, "tensor '", prefix,
                  Gpt2Names::wpe, "' in ", weights.file_of(prefix + Gpt2Names::wpe),
                  " has wrong shape; expected [n_positions, ", d, "]");
    wpe_ = load(Gpt2Names::wpe, wpe_info.shape);
    config_.n_ctx = std::min<int64_t>(config_.n_ctx, wpe_.size(0));
    ln_f_w_ = load(Gpt2Names::ln_f_w, {d});
    ln_f_b_ = load(Gpt2Names::ln_f_b, {d});
    if (!config.tie_word_embeddings && weights.contains("lm_head.weight")) {
      unembed_ = weights.load("lm_head.weight", {v, d}, torch::kFloat32).to(device);
    } else {
      unembed_ = wte_;
    }
    for (int l = 0; l < config.n_layers; ++l) {
      Gpt2Block b;
      auto ld = [&](const char* pattern, std::vector<int64_t> shape) { return load(layer_name(pattern, l), shape); };
      b.ln_1_w = ld(Gpt2Names::ln_1_w, {d});
      b.ln_1_b = ld(Gpt2Names::ln_1_b, {d});
      b.c_attn_w = ld(Gpt2Names::c_attn_w, {d, 3 * d});
      b.c_attn_b = ld(Gpt2Names::c_attn_b, {3 * d});
      b.c_proj_w = ld(Gpt2Names::c_proj_w, {d, d});
      b.c_proj_b = ld(Gpt2Names::c_proj_b, {d});
      b.ln_2_w = ld(Gpt2Names::ln_2_w, {d});
      b.ln_2_b = ld(Gpt2Names::ln_2_b, {d});
      b.fc_w = ld(Gpt2Names::fc_w, {d, m});
      b.fc_b = ld(Gpt2Names::fc_b, {m});
      b.fc_proj_w = ld(Gpt2Names::fc_proj_w, {m, d});
      b.fc_proj_b = ld(Gpt2Names::fc_proj_b, {d});
      b.w_o = b.c_proj_w.view({config.n_heads, config.head_dim, d});
      blocks_.push_back(std::move(b));
    }
  }

  const ModelConfig& config() const override { return config_; }

  ForwardCapture forward(const std::vector<int32_t>& ids, const std::vector<int>& capture_layers) const override {
    c10::InferenceMode guard;
    const std::vector<bool> capture = check_forward_input(config_, ids, capture_layers);
    const int64_t n = static_cast<int64_t>(ids.size());

    const auto id_tensor = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).to(device_);
    const int64_t d = config_.d_model, h = config_.n_heads, hd = config_.head_dim;
    torch::Tensor x = wte_.index_select(0, id_tensor) + wpe_.slice(0, 0, n);
    const auto causal = torch::ones({n, n}, torch::dtype(torch::kBool).device(device_)).triu(1);
    ForwardCapture out;
    out.layers.resize(config_.n_layers);
    for (int l = 0; l < config_.n_layers; ++l) {
      const Gpt2Block& b = blocks_[l];
      LayerCapture& cap = out.layers[l];
      if (capture[l]) cap.resid_pre = x.clone();
      const auto ln1 = torch::layer_norm(x, {d}, b.ln_1_w, b.ln_1_b, config_.norm_eps);
      const auto qkv = torch::addmm(b.c_attn_b, ln1, b.c_attn_w);  // [n, 3d]
      auto heads = [&](int64_t part) { return qkv.slice(1, part * d, (part + 1) * d).view({n, h, hd}).transpose(0, 1); };
      const auto q = heads(0), k = heads(1), v = heads(2);  // [h, n, hd]
      auto scores = torch::matmul(q, k.transpose(1, 2)) / std::sqrt(static_cast<double>(hd));
      scores.masked_fill_(causal, -std::numeric_limits<float>::infinity());
      const auto pattern = torch::softmax(scores, -1);
      const auto z = torch::matmul(pattern, v).transpose(0, 1).reshape({n, d});
      const auto attn_out = torch::addmm(b.c_proj_b, z, b.c_proj_w);
      x = x + attn_out;
      if (capture[l]) {
        cap.resid_mid = x.clone();
        cap.pattern = pattern.contiguous();
        cap.values = v.contiguous();
      }
      const auto ln2 = torch::layer_norm(x, {d}, b.ln_2_w, b.ln_2_b, config_.norm_eps);
      if (capture[l]) cap.mlp_in = ln2;
      auto hidden = torch::addmm(b.fc_b, ln2, b.fc_w);
      if (config_.activation == "gelu_new") {
        hidden = torch::gelu(hidden, "tanh");
      } else if (config_.activation == "gelu") {
        hidden = torch::gelu(hidden);
      } else {
        hidden = torch::relu(hidden);
      }
      x = x + torch::addmm(b.fc_proj_b, hidden, b.fc_proj_w);
      if (capture[l]) cap.resid_post = x.clone();
    }
    out.logits = readout(x);
    return out;
  }

  torch::Tensor head_outputs(int layer, const torch::Tensor& values) const override {
    // [h, n, hd] x [h, hd, d] -> [h, n, d]
    return torch::bmm(values, blocks_.at(layer).w_o);
  }
  torch::Tensor attention_output_bias(int layer) const override { return blocks_.at(layer).c_proj_b; }
  torch::Tensor post_attention(int, const torch::Tensor& x) const override { return x; }
  bool has_post_attention_norm() const override { return false; }
  torch::Tensor readout(const torch::Tensor& resid) const override {
    const auto normed = torch::layer_norm(resid, {config_.d_model}, ln_f_w_, ln_f_b_, config_.norm_eps);
    return torch::matmul(normed, unembed_.t());
  }

 private:
  ModelConfig config_;
  torch::Device device_;  // where the weights live and the forward pass runs
  torch::Tensor wte_, wpe_, ln_f_w_, ln_f_b_, unembed_;
  std::vector<Gpt2Block> blocks_;
};

std::unique_ptr<Model> load_gpt2(const ModelConfig& config, const io::SafetensorsSet& weights,
                                  const torch::Device& device) {
  return std::make_unique<Gpt2Model>(config, weights, device);
}

void parse_gpt2(const ConfigReader& j, ModelConfig& c) {
  c.d_model = j.required<int64_t>("n_embd");
  c.n_layers = j.required<int64_t>("n_layer");
  c.n_heads = j.required<int64_t>("n_head");
  c.n_kv_heads = c.n_heads;
  c.vocab_size = j.required<int64_t>("vocab_size");
  c.n_ctx = j.optional<int64_t>("n_positions", j.optional<int64_t>("n_ctx", 1024));
  c.d_mlp = j.optional<int64_t>("n_inner", 0);
  if (c.d_mlp == 0) c.d_mlp = 4 * c.d_model;  // null, absent or 0: 4 x d_model, as transformers
  c.norm_eps = j.optional<double>("layer_norm_epsilon", 1e-5);
  c.activation = j.optional<std::string>("activation_function", "gelu_new");
  c.tie_word_embeddings = j.optional<bool>("tie_word_embeddings", true);
  c.bos_token_id = j.token("bos_token_id");
  c.eos_token_id = j.token("eos_token_id");
  c.mlp_matrices = 2;
  c.learned_positions = true;
  SAETRAJ_CHECK(c.activation == "gelu_new" || c.activation == "gelu" || c.activation == "relu", InputError,
                j.origin(), ": activation_function \"", c.activation, "\" is not supported (gelu_new, gelu, relu)");
}

}  // namespace

extern const Architecture kGpt2Architecture{"GPT2LMHeadModel", "gpt2", &parse_gpt2, &load_gpt2};

}  // namespace saetraj::model
