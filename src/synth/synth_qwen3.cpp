#include <algorithm>
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

ojson qwen3_config(const SynthOptions& o, const support::DecoderShape& s, int32_t endoftext) {
  // As Qwen/Qwen3-1.7B-Base's config.json: bos and eos are both <|endoftext|>, which the tokenizer itself
  // does not add.
  return ojson{{"architectures", {"Qwen3ForCausalLM"}},
               {"model_type", "qwen3"},
               {"hidden_size", s.d},
               {"intermediate_size", s.m},
               {"num_hidden_layers", o.n_layers},
               {"num_attention_heads", s.h},
               {"num_key_value_heads", s.kv},
               {"head_dim", s.hd},
               {"vocab_size", s.vocab},
               {"max_position_embeddings", o.n_ctx},
               {"rms_norm_eps", 1e-6},
               {"hidden_act", "silu"},
               {"rope_theta", 1000000.0},
               {"rope_scaling", nullptr},
               {"attention_bias", false},
               {"use_sliding_window", false},
               {"tie_word_embeddings", true},
               {"bos_token_id", endoftext},
               {"eos_token_id", endoftext},
               {"torch_dtype", "float32"},
               {"saetraj_synthetic_seed", o.seed}};
}

}  // namespace

SynthResult synth_qwen3_fixture(const SynthOptions& o) {
  support::check_options(o);
  support::DecoderShape shape = support::decoder_shape(o, true);
  SAETRAJ_CHECK(o.topk_k > 0 && o.topk_k <= o.d_sae, InputError, "--topk-k must be in 1..--d-sae (", o.d_sae,
                "), got ", o.topk_k);
  c10::InferenceMode guard;
  Rng rng(o.seed);
  SynthResult r = support::sae_lens_result(o, "saetraj-demo-qwen3");

  auto bpe = tokenizer::train_byte_level_bpe(demo_corpus(), o.vocab_size, {"<|endoftext|>", "<|im_start|>"},
                                             tokenizer::PreTokenizer::QWEN2);
  const int32_t endoftext = bpe.special_tokens.at("<|endoftext|>");
  bpe.add_bos = false;  // Qwen's tokenizer has no BOS token and adds none
  bpe.normalizer = tokenizer::Normalizer::NFC;  // as Qwen2/Qwen3's tokenizer.json: NFC before the Split
  tokenizer::write_bpe_files(r.model_dir, bpe);
  shape.vocab = support::bpe_vocab_size(bpe);
  support::write_json(r.model_dir + "/config.json", qwen3_config(o, shape, endoftext));
  // Qwen3ForCausalLM's tensors: no biases, per-head q/k RMSNorm weights, tied embeddings (no lm_head), as
  // Qwen3-0.6B to 4B are saved.
  io::write_safetensors(r.model_dir + "/model.safetensors",
                        support::decoder_weights(o, shape, {.gemma = false, .qk_norm = true, .tied = true}, rng),
                        {{"format", "pt"}});

  // Calibration on resid_post, the hook the SAEs read, with <|endoftext|> first as the SAEs' prepend_bos asks.
  const auto model = model::load_model(r.model_dir);
  const tokenizer::ByteLevelBpe tok(bpe);
  const auto calibration = support::calibrate(*model, tok, endoftext, o.n_ctx);

  // TopK SAEs in SAE-Lens's folder layout, as SAE-Lens saves Qwen Scope's (`topk`, k, no b_dec subtraction;
  // see jobs/qwen3.cfg): encoder directions half from the data, b_enc centring the pre-activations.
  for (int l = 0; l < o.n_layers; ++l) {
    const auto x = calibration.resid_post[l];
    const auto mean = x.mean(0);
    const auto z = x - mean;
    const auto directions = support::data_directions(z, o.d_sae, rng);
    const double scale = z.pow(2).sum(1).mean().sqrt().item<double>();
    sae::Sae s;
    s.cfg.d_in = o.d_model;
    s.cfg.d_sae = o.d_sae;
    s.cfg.activation = sae::Activation::TopK;
    s.cfg.topk_k = o.topk_k;
    s.w_enc = (directions / scale).t().contiguous();
    s.b_enc = (-torch::matmul(mean, s.w_enc)).contiguous();  // pre-activation of the mean row is 0
    s.b_dec = mean.contiguous();
    support::write_sae_lens_fixture_sae(r, o, l, "demo-res-topk",
                                        ojson{{"architecture", "topk"},
                                              {"d_in", o.d_model},
                                              {"d_sae", o.d_sae},
                                              {"dtype", "float32"},
                                              {"k", o.topk_k},
                                              {"apply_b_dec_to_input", false},
                                              {"normalize_activations", "none"},
                                              {"rescale_acts_by_decoder_norm", false}},
                                        s, directions, x, calibration, rng);
  }
  return r;
}

}  // namespace saetraj::synth
