#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/io/npz.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/sae/gemma_scope.h"
#include "saetraj/sae/sae.h"
#include "saetraj/synth/synth.h"
#include "saetraj/tokenizer/sentencepiece_tokenizer.h"
#include "synth_support.h"

namespace saetraj::synth {
namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;
using support::layer_name;
using support::Rng;

struct Gemma2Shape {
  int64_t d, m, h, kv, hd, vocab;
};

// Gemma-2 weights in the HF layout. Norm weights are stored as w with the model using (1 + w), so they
// are drawn around 0; projections are scaled so that attention patterns are far from uniform.
std::vector<std::pair<std::string, torch::Tensor>> gemma2_weights(const SynthOptions& o, const Gemma2Shape& s,
                                                                  Rng& rng) {
  const double in_d = 1.0 / std::sqrt(static_cast<double>(s.d));
  std::vector<std::pair<std::string, torch::Tensor>> w;
  w.emplace_back("model.embed_tokens.weight", rng.normal({s.vocab, s.d}, in_d));
  w.emplace_back("model.norm.weight", rng.normal({s.d}, 0.1));
  for (int l = 0; l < o.n_layers; ++l) {
    auto add = [&](const char* pattern, std::vector<int64_t> shape, double std) {
      w.emplace_back(layer_name(pattern, l), rng.normal(std::move(shape), std));
    };
    add("model.layers.{L}.input_layernorm.weight", {s.d}, 0.1);
    add("model.layers.{L}.self_attn.q_proj.weight", {s.h * s.hd, s.d}, 2.0 * in_d);
    add("model.layers.{L}.self_attn.k_proj.weight", {s.kv * s.hd, s.d}, 2.0 * in_d);
    add("model.layers.{L}.self_attn.v_proj.weight", {s.kv * s.hd, s.d}, in_d);
    add("model.layers.{L}.self_attn.o_proj.weight", {s.d, s.h * s.hd}, 1.0 / std::sqrt(double(s.h * s.hd)));
    add("model.layers.{L}.post_attention_layernorm.weight", {s.d}, 0.1);
    add("model.layers.{L}.pre_feedforward_layernorm.weight", {s.d}, 0.1);
    add("model.layers.{L}.mlp.gate_proj.weight", {s.m, s.d}, in_d);
    add("model.layers.{L}.mlp.up_proj.weight", {s.m, s.d}, in_d);
    add("model.layers.{L}.mlp.down_proj.weight", {s.d, s.m}, 1.0 / std::sqrt(double(s.m)));
    add("model.layers.{L}.post_feedforward_layernorm.weight", {s.d}, 0.1);
  }
  return w;
}

ojson gemma2_config(const SynthOptions& o, const Gemma2Shape& s) {
  return ojson{{"architectures", {"Gemma2ForCausalLM"}},
               {"model_type", "gemma2"},
               {"attention_bias", false},
               {"attention_dropout", 0.0},
               {"attn_logit_softcapping", o.attn_softcap},
               {"bos_token_id", 2},
               {"cache_implementation", "hybrid"},
               {"eos_token_id", 1},
               {"final_logit_softcapping", o.final_softcap},
               {"head_dim", s.hd},
               {"hidden_act", "gelu_pytorch_tanh"},
               {"hidden_activation", "gelu_pytorch_tanh"},
               {"hidden_size", s.d},
               {"initializer_range", 0.02},
               {"intermediate_size", s.m},
               {"max_position_embeddings", o.n_ctx},
               {"num_attention_heads", s.h},
               {"num_hidden_layers", o.n_layers},
               {"num_key_value_heads", s.kv},
               {"pad_token_id", 0},
               // Deliberately not head_dim, so that a model scaling by head_dim^-0.5 would be caught.
               {"query_pre_attn_scalar", 2 * s.hd},
               {"rms_norm_eps", 1e-6},
               {"rope_theta", 10000.0},
               {"sliding_window", o.sliding_window},
               {"torch_dtype", "bfloat16"},
               {"transformers_version", "4.42.4"},
               {"use_cache", true},
               {"vocab_size", s.vocab},
               {"saetraj_synthetic_seed", o.seed}};
}

}  // namespace

SynthResult synth_gemma2_fixture(const SynthOptions& o) {
  support::check_options(o);
  SAETRAJ_CHECK(o.head_dim > 0 || o.d_model % o.n_heads == 0, InputError,
                "d_model must be a multiple of n_heads (or give head_dim)");
  const int kv = o.n_kv_heads > 0 ? o.n_kv_heads : (o.n_heads % 2 == 0 ? o.n_heads / 2 : o.n_heads);
  SAETRAJ_CHECK(o.n_heads % kv == 0, InputError, "n_heads ", o.n_heads, " is not a multiple of n_kv_heads ",
                kv);
  c10::InferenceMode guard;
  Rng rng(o.seed);
  SynthResult r;
  // The folder is named like the Neuronpedia model id: that is where a sweep takes the id of Gemma Scope
  // SAEs from for a model that is not one of Google's (sae::gemma_scope_model_id).
  r.model_dir = o.out + "/saetraj-demo-gemma2";
  r.gemmascope_root = o.out + "/saes";
  r.explanations_root = o.out + "/explanations";
  r.neuronpedia_model = "saetraj-demo-gemma2";
  r.gemmascope_width = sae::gemma_scope_width_label(o.d_sae);
  fs::create_directories(r.model_dir);

  // Tokenizer: Gemma-like SentencePiece (BOS 2 added by default, EOS 1).
  tokenizer::train_sentencepiece(demo_corpus(), o.vocab_size, r.model_dir + "/tokenizer.model");
  const tokenizer::SentencePieceTokenizer tok(r.model_dir + "/tokenizer.model", 2);
  const Gemma2Shape shape{
      o.d_model,       o.d_mlp, o.n_heads, kv, o.head_dim > 0 ? o.head_dim : o.d_model / o.n_heads,
      tok.vocab_size()};
  support::write_json(r.model_dir + "/config.json", gemma2_config(o, shape));
  // Shards of about a third of the weights each, so the index file is exercised.
  const auto weights = gemma2_weights(o, shape, rng);
  uint64_t bytes = 0;
  for (const auto& [name, t] : weights) bytes += static_cast<uint64_t>(t.numel()) * 2;
  io::write_safetensors_sharded(r.model_dir, weights, bytes / 3 + 1, io::DType::BF16);

  // Calibration on the model's resid_post, the hook Gemma Scope SAEs read.
  const auto model = model::load_model(r.model_dir);
  const auto calibration = support::calibrate(*model, tok, 2, o.n_ctx);

  // Two sparsities per layer: the calibrated firing rate and four times it. The folder name is the
  // average L0 measured on the corpus, as in the release.
  for (int l = 0; l < o.n_layers; ++l) {
    const auto x = calibration.resid_post[l];
    const std::string width_dir =
        r.gemmascope_root + "/layer_" + std::to_string(l) + "/width_" + r.gemmascope_width;
    fs::remove_all(width_dir);  // a previous run's folders would be taken for other sparsities
    for (const double rate : {o.firing_rate, 4.0 * o.firing_rate}) {
      sae::Sae s = support::calibrated_jumprelu_sae(x, o.d_sae, rate, rng);
      const auto acts = s.encode(x);
      const auto l0 =
          static_cast<int64_t>(std::lround((acts > 0).sum(1).to(torch::kFloat64).mean().item<double>()));
      const std::string dir = width_dir + "/average_l0_" + std::to_string(l0);
      SAETRAJ_CHECK(!fs::exists(dir), Error, "synth: two SAEs of layer ", l, " have the same average L0 ", l0,
                    "; change --d-sae or the firing rate");
      fs::create_directories(dir);
      const auto w_dec = (s.w_enc.t() * s.w_enc.pow(2).sum(0).rsqrt().unsqueeze(1)).contiguous();
      io::write_npz(dir + "/params.npz", {{"W_enc", s.w_enc},
                                          {"W_dec", w_dec},
                                          {"b_enc", s.b_enc},
                                          {"b_dec", s.b_dec},
                                          {"threshold", s.threshold}});
      if (rate == o.firing_rate) {
        r.sae_dirs.push_back(dir);
        support::write_explanations(r.explanations_root, r.neuronpedia_model,
                                    std::to_string(l) + "-gemmascope-res-" + r.gemmascope_width, acts,
                                    calibration.row_token, calibration.row_prev, rng);
      }
    }
  }
  return r;
}

}  // namespace saetraj::synth
