#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/sae/sae.h"
#include "saetraj/synth/synth.h"
#include "saetraj/tokenizer/byte_level_bpe.h"
#include "synth_support.h"

namespace saetraj::synth {
namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;
using support::layer_name;
using support::Rng;

struct LlamaShape {
  int64_t d, m, h, kv, hd, vocab;
};

std::vector<std::pair<std::string, torch::Tensor>> llama_weights(const SynthOptions& o, const LlamaShape& s,
                                                                 Rng& rng) {
  const double in_d = 1.0 / std::sqrt(static_cast<double>(s.d));
  std::vector<std::pair<std::string, torch::Tensor>> w;
  w.emplace_back("model.embed_tokens.weight", rng.normal({s.vocab, s.d}, 1.0));
  w.emplace_back("model.norm.weight", rng.normal({s.d}, 0.1, 1.0));
  w.emplace_back("lm_head.weight", rng.normal({s.vocab, s.d}, in_d));
  for (int l = 0; l < o.n_layers; ++l) {
    auto add = [&](const char* pattern, std::vector<int64_t> shape, double std, double mean = 0.0) {
      w.emplace_back(layer_name(pattern, l), rng.normal(std::move(shape), std, mean));
    };
    add("model.layers.{L}.input_layernorm.weight", {s.d}, 0.1, 1.0);
    add("model.layers.{L}.self_attn.q_proj.weight", {s.h * s.hd, s.d}, 2.0 * in_d);
    add("model.layers.{L}.self_attn.k_proj.weight", {s.kv * s.hd, s.d}, 2.0 * in_d);
    add("model.layers.{L}.self_attn.v_proj.weight", {s.kv * s.hd, s.d}, in_d);
    add("model.layers.{L}.self_attn.o_proj.weight", {s.d, s.h * s.hd}, 1.0 / std::sqrt(double(s.h * s.hd)));
    add("model.layers.{L}.post_attention_layernorm.weight", {s.d}, 0.1, 1.0);
    add("model.layers.{L}.mlp.gate_proj.weight", {s.m, s.d}, in_d);
    add("model.layers.{L}.mlp.up_proj.weight", {s.m, s.d}, in_d);
    add("model.layers.{L}.mlp.down_proj.weight", {s.d, s.m}, 1.0 / std::sqrt(double(s.m)));
  }
  return w;
}

ojson llama_config(const SynthOptions& o, const LlamaShape& s, int32_t bos, int32_t eos) {
  // A short original context so that RoPE's llama3 rule touches all three frequency bands.
  return ojson{{"architectures", {"LlamaForCausalLM"}},
               {"model_type", "llama"},
               {"hidden_size", s.d},
               {"intermediate_size", s.m},
               {"num_hidden_layers", o.n_layers},
               {"num_attention_heads", s.h},
               {"num_key_value_heads", s.kv},
               {"head_dim", s.hd},
               {"vocab_size", s.vocab},
               {"max_position_embeddings", o.n_ctx},
               {"rms_norm_eps", 1e-5},
               {"hidden_act", "silu"},
               {"rope_theta", 500000.0},
               {"rope_scaling",
                {{"rope_type", "llama3"},
                 {"factor", 8.0},
                 {"low_freq_factor", 1.0},
                 {"high_freq_factor", 4.0},
                 {"original_max_position_embeddings", 32}}},
               {"tie_word_embeddings", false},
               {"attention_bias", false},
               {"mlp_bias", false},
               {"bos_token_id", bos},
               {"eos_token_id", eos},
               {"torch_dtype", "float32"},
               {"saetraj_synthetic_seed", o.seed}};
}

}  // namespace

SynthResult synth_llama_fixture(const SynthOptions& o) {
  support::check_options(o);
  SAETRAJ_CHECK(o.d_model % o.n_heads == 0, InputError, "d_model must be a multiple of n_heads");
  const int kv = o.n_kv_heads > 0 ? o.n_kv_heads : (o.n_heads % 2 == 0 ? o.n_heads / 2 : o.n_heads);
  SAETRAJ_CHECK(o.n_heads % kv == 0, InputError, "n_heads ", o.n_heads, " is not a multiple of n_kv_heads ", kv);
  c10::InferenceMode guard;
  Rng rng(o.seed);
  SynthResult r;
  r.model_dir = o.out + "/model";
  r.sae_pattern = o.out + "/saes/layer_{layer}";
  r.explanations_root = o.out + "/explanations";
  r.neuronpedia_model = "saetraj-demo-llama";
  fs::create_directories(r.model_dir);

  auto bpe = tokenizer::train_byte_level_bpe(demo_corpus(), o.vocab_size, {"<|begin_of_text|>", "<|end_of_text|>"},
                                             tokenizer::PreTokenizer::LLAMA3);
  const int32_t bos = bpe.special_tokens.at("<|begin_of_text|>");
  const int32_t eos = bpe.special_tokens.at("<|end_of_text|>");
  bpe.bos_id = bos;
  bpe.add_bos = true;
  tokenizer::write_bpe_files(r.model_dir, bpe);
  int64_t vocab = 0;
  for (const auto& [piece, id] : bpe.vocab) vocab = std::max<int64_t>(vocab, id + 1);
  for (const auto& [piece, id] : bpe.special_tokens) vocab = std::max<int64_t>(vocab, id + 1);
  const LlamaShape shape{o.d_model, o.d_mlp, o.n_heads, kv, o.d_model / o.n_heads, vocab};
  support::write_json(r.model_dir + "/config.json", llama_config(o, shape, bos, eos));
  io::write_safetensors(r.model_dir + "/model.safetensors", llama_weights(o, shape, rng), {{"format", "pt"}});

  // Calibration on resid_post, the hook the SAEs read.
  const auto model = model::load_model(r.model_dir);
  const tokenizer::ByteLevelBpe tok(bpe);
  const auto calibration = support::calibrate(*model, tok, bos, o.n_ctx);

  for (int l = 0; l < o.n_layers; ++l) {
    const std::string dir = o.out + "/saes/layer_" + std::to_string(l);
    fs::create_directories(dir);
    const std::string source = std::to_string(l) + "-demo-res";
    support::write_json(dir + "/cfg.json",
                        ojson{{"architecture", "standard"},
                              {"d_in", o.d_model},
                              {"d_sae", o.d_sae},
                              {"dtype", "float32"},
                              {"apply_b_dec_to_input", true},
                              {"normalize_activations", "none"},
                              {"metadata",
                               {{"model_name", r.neuronpedia_model},
                                {"hook_name", "blocks." + std::to_string(l) + ".hook_resid_post"},
                                {"prepend_bos", true},
                                {"model_from_pretrained_kwargs", ojson::object()},
                                {"neuronpedia_id", r.neuronpedia_model + "/" + source}}}});
    const auto x = calibration.resid_post[l];
    sae::Sae s;
    s.cfg.d_in = o.d_model;
    s.cfg.d_sae = o.d_sae;
    s.b_dec = x.mean(0).contiguous();
    const auto z = x - s.b_dec;
    auto directions = rng.normal({o.d_sae, o.d_model}, 1.0);
    for (int64_t feat = 0; feat < o.d_sae; feat += 2) {
      const int64_t row = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(z.size(0)));
      directions[feat] = z[row] / z[row].norm() * std::sqrt(double(o.d_model)) + 0.3 * directions[feat];
    }
    directions = directions / directions.norm(2, 1, true);
    const double scale = z.pow(2).sum(1).mean().sqrt().item<double>();
    s.w_enc = (directions / scale).t().contiguous();
    s.b_enc = (-torch::matmul(z, s.w_enc).quantile(1.0 - o.firing_rate, 0)).contiguous();
    io::write_safetensors(dir + "/sae_weights.safetensors", {{"W_enc", s.w_enc},
                                                             {"W_dec", directions.contiguous()},
                                                             {"b_enc", s.b_enc},
                                                             {"b_dec", s.b_dec}});
    r.sae_dirs.push_back(dir);
    support::write_explanations(r.explanations_root, r.neuronpedia_model, source, s.encode(x), calibration.row_token,
                                calibration.row_prev, rng);
  }
  return r;
}

}  // namespace saetraj::synth
