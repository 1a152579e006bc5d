#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/sae/gemma_scope.h"
#include "saetraj/synth/sae_formats.h"
#include "saetraj/synth/synth.h"
#include "saetraj/tokenizer/sentencepiece_tokenizer.h"
#include "synth_support.h"

namespace saetraj::synth {
namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;
using support::layer_name;
using support::Rng;

struct Gemma3Shape {
  int64_t d, m, h, kv, hd, vocab;
};

// Gemma-3's full-attention layers: every third here (gemma-3 has every sixth), so that small fixtures have both.
bool is_full(int layer) { return (layer + 1) % 3 == 0; }

std::vector<std::pair<std::string, torch::Tensor>> gemma3_weights(const SynthOptions& o, const Gemma3Shape& s,
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
    add("model.layers.{L}.self_attn.q_norm.weight", {s.hd}, 0.3);
    add("model.layers.{L}.self_attn.k_norm.weight", {s.hd}, 0.3);
    add("model.layers.{L}.post_attention_layernorm.weight", {s.d}, 0.1);
    add("model.layers.{L}.pre_feedforward_layernorm.weight", {s.d}, 0.1);
    add("model.layers.{L}.mlp.gate_proj.weight", {s.m, s.d}, in_d);
    add("model.layers.{L}.mlp.up_proj.weight", {s.m, s.d}, in_d);
    add("model.layers.{L}.mlp.down_proj.weight", {s.d, s.m}, 1.0 / std::sqrt(double(s.m)));
    add("model.layers.{L}.post_feedforward_layernorm.weight", {s.d}, 0.1);
  }
  return w;
}

// As transformers 5 writes a Gemma3ForCausalLM config: layer_types and per-kind rope_parameters.
ojson gemma3_config(const SynthOptions& o, const Gemma3Shape& s) {
  ojson kinds = ojson::array();
  for (int l = 0; l < o.n_layers; ++l) kinds.push_back(is_full(l) ? "full_attention" : "sliding_attention");
  return ojson{{"architectures", {"Gemma3ForCausalLM"}},
               {"model_type", "gemma3_text"},
               {"attention_bias", false},
               {"attn_logit_softcapping", nullptr},
               {"bos_token_id", 2},
               {"eos_token_id", 1},
               {"pad_token_id", 0},
               {"dtype", "bfloat16"},
               {"final_logit_softcapping", nullptr},
               {"head_dim", s.hd},
               {"hidden_activation", "gelu_pytorch_tanh"},
               {"hidden_size", s.d},
               {"intermediate_size", s.m},
               {"layer_types", kinds},
               {"max_position_embeddings", o.n_ctx},
               {"num_attention_heads", s.h},
               {"num_hidden_layers", o.n_layers},
               {"num_key_value_heads", s.kv},
               {"query_pre_attn_scalar", s.hd},
               {"rms_norm_eps", 1e-6},
               {"rope_parameters",
                {{"full_attention", {{"rope_theta", 1000000.0}, {"rope_type", "default"}}},
                 {"sliding_attention", {{"rope_theta", 10000.0}, {"rope_type", "default"}}}}},
               {"sliding_window", o.sliding_window},
               {"tie_word_embeddings", true},
               {"transformers_version", "5.18.0"},
               {"use_bidirectional_attention", false},
               {"vocab_size", s.vocab},
               {"saetraj_synthetic_seed", o.seed}};
}

}  // namespace

SynthResult synth_gemma3_fixture(const SynthOptions& o) {
  support::check_options(o);
  SAETRAJ_CHECK(o.head_dim > 0 || o.d_model % o.n_heads == 0, InputError,
                "d_model must be a multiple of n_heads (or give head_dim)");
  const int kv = o.n_kv_heads > 0 ? o.n_kv_heads : (o.n_heads % 2 == 0 ? o.n_heads / 2 : o.n_heads);
  SAETRAJ_CHECK(o.n_heads % kv == 0, InputError, "n_heads ", o.n_heads, " is not a multiple of n_kv_heads ",
                kv);
  c10::InferenceMode guard;
  Rng rng(o.seed);
  SynthResult r;
  r.model_dir = o.out + "/saetraj-demo-gemma3";
  r.gemmascope_root = o.out + "/saes";
  r.explanations_root = o.out + "/explanations";
  r.neuronpedia_model = "saetraj-demo-gemma3";
  r.gemmascope_width = sae::gemma_scope_width_label(o.d_sae);
  fs::create_directories(r.model_dir);

  tokenizer::train_sentencepiece(demo_corpus(), o.vocab_size, r.model_dir + "/tokenizer.model");
  const tokenizer::SentencePieceTokenizer tok(r.model_dir + "/tokenizer.model", 2);
  const Gemma3Shape shape{
      o.d_model,       o.d_mlp, o.n_heads, kv, o.head_dim > 0 ? o.head_dim : o.d_model / o.n_heads,
      tok.vocab_size()};
  support::write_json(r.model_dir + "/config.json", gemma3_config(o, shape));
  io::write_safetensors(r.model_dir + "/model.safetensors", gemma3_weights(o, shape, rng), {{"format", "pt"}},
                        io::DType::BF16);

  // Gemma Scope 2-layout JumpReLU SAEs on resid_post, calibrated on the model's own activations:
  // saes/resid_post/layer_L_width_W_l0_{small,big}/params.safetensors.
  const auto model = model::load_model(r.model_dir);
  const auto calibration = support::calibrate(*model, tok, 2, o.n_ctx);
  for (int l = 0; l < o.n_layers; ++l) {
    const auto x = calibration.resid_post[l];
    for (const auto& [l0, rate] : {std::pair<const char*, double>{"small", o.firing_rate},
                                   std::pair<const char*, double>{"big", 4.0 * o.firing_rate}}) {
      const sae::Sae s = support::calibrated_jumprelu_sae(x, o.d_sae, rate, rng);
      GemmaScope2Spec spec;
      spec.layer = l;
      spec.width = r.gemmascope_width;
      spec.l0 = l0;
      spec.model_name = r.neuronpedia_model;
      const auto w_dec = (s.w_enc.t() * s.w_enc.pow(2).sum(0).rsqrt().unsqueeze(1)).contiguous();
      const std::string dir =
          write_gemma_scope2_sae(r.gemmascope_root, spec, RawSae{s.w_enc, w_dec, s.b_enc, s.b_dec, s.threshold});
      if (rate == o.firing_rate) r.sae_dirs.push_back(dir);
    }
  }
  return r;
}

}  // namespace saetraj::synth
