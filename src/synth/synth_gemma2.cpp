#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/io/npz.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/sae/sae.h"
#include "saetraj/synth/synth.h"
#include "saetraj/tokenizer/sentencepiece_tokenizer.h"
#include "synth_support.h"

namespace saetraj::synth {
namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;
using support::Rng;

ojson gemma2_config(const SynthOptions& o, const support::DecoderShape& s) {
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
  auto [r, tok, shape] = support::start_gemma_fixture(o, "saetraj-demo-gemma2");
  c10::InferenceMode guard;
  Rng rng(o.seed);
  support::write_json(r.model_dir + "/config.json", gemma2_config(o, shape));
  const auto weights = support::decoder_weights(o, shape, {.gemma = true, .qk_norm = false, .tied = true}, rng);
  // Shards of about a third of the weights each, so the index file is exercised.
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
