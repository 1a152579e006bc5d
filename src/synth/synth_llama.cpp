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
using support::Rng;

ojson llama_config(const SynthOptions& o, const support::DecoderShape& s, int32_t bos, int32_t eos) {
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
  support::DecoderShape shape = support::decoder_shape(o, false);
  c10::InferenceMode guard;
  Rng rng(o.seed);
  SynthResult r = support::sae_lens_result(o, "saetraj-demo-llama");

  auto bpe = tokenizer::train_byte_level_bpe(demo_corpus(), o.vocab_size, {"<|begin_of_text|>", "<|end_of_text|>"},
                                             tokenizer::PreTokenizer::LLAMA3);
  const int32_t bos = bpe.special_tokens.at("<|begin_of_text|>");
  const int32_t eos = bpe.special_tokens.at("<|end_of_text|>");
  bpe.bos_id = bos;
  bpe.add_bos = true;
  tokenizer::write_bpe_files(r.model_dir, bpe);
  shape.vocab = support::bpe_vocab_size(bpe);
  support::write_json(r.model_dir + "/config.json", llama_config(o, shape, bos, eos));
  io::write_safetensors(r.model_dir + "/model.safetensors",
                        support::decoder_weights(o, shape, {.gemma = false, .qk_norm = false, .tied = false}, rng),
                        {{"format", "pt"}});

  // Calibration on resid_post, the hook the SAEs read.
  const auto model = model::load_model(r.model_dir);
  const tokenizer::ByteLevelBpe tok(bpe);
  const auto calibration = support::calibrate(*model, tok, bos, o.n_ctx);

  for (int l = 0; l < o.n_layers; ++l) {
    const auto x = calibration.resid_post[l];
    sae::Sae s;
    s.cfg.d_in = o.d_model;
    s.cfg.d_sae = o.d_sae;
    s.b_dec = x.mean(0).contiguous();
    const auto z = x - s.b_dec;
    const auto directions = support::data_directions(z, o.d_sae, rng);
    const double scale = z.pow(2).sum(1).mean().sqrt().item<double>();
    s.w_enc = (directions / scale).t().contiguous();
    s.b_enc = (-torch::matmul(z, s.w_enc).quantile(1.0 - o.firing_rate, 0)).contiguous();
    support::write_sae_lens_fixture_sae(r, o, l, "demo-res",
                                        ojson{{"architecture", "standard"},
                                              {"d_in", o.d_model},
                                              {"d_sae", o.d_sae},
                                              {"dtype", "float32"},
                                              {"apply_b_dec_to_input", true},
                                              {"normalize_activations", "none"}},
                                        s, directions, x, calibration, rng);
  }
  return r;
}

}  // namespace saetraj::synth
