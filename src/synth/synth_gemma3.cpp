#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/synth/sae_formats.h"
#include "saetraj/synth/synth.h"
#include "saetraj/tokenizer/sentencepiece_tokenizer.h"
#include "synth_support.h"

namespace saetraj::synth {
namespace {

using ojson = nlohmann::ordered_json;
using support::Rng;

// Gemma-3's full-attention layers: every third here (gemma-3 has every sixth), so that small fixtures have both.
bool is_full(int layer) { return (layer + 1) % 3 == 0; }

// As transformers 5 writes a Gemma3ForCausalLM config: layer_types and per-kind rope_parameters.
ojson gemma3_config(const SynthOptions& o, const support::DecoderShape& s) {
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
  auto [r, tok, shape] = support::start_gemma_fixture(o, "saetraj-demo-gemma3");
  c10::InferenceMode guard;
  Rng rng(o.seed);
  support::write_json(r.model_dir + "/config.json", gemma3_config(o, shape));
  io::write_safetensors(r.model_dir + "/model.safetensors",
                        support::decoder_weights(o, shape, {.gemma = true, .qk_norm = true, .tied = true}, rng),
                        {{"format", "pt"}}, io::DType::BF16);

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
