#include <cmath>
#include <filesystem>
#include <fstream>
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
using support::write_json;

// The GPT-2 weights, scaled so that attention patterns are far from uniform and every bias is non-zero
// (b_O in particular, which the method spreads over the source tokens).
std::vector<std::pair<std::string, torch::Tensor>> gpt2_weights(const SynthOptions& o, int64_t vocab, Rng& rng) {
  const int64_t d = o.d_model, m = o.d_mlp;
  const double s = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<std::pair<std::string, torch::Tensor>> w;
  w.emplace_back("wte.weight", rng.normal({vocab, d}, 1.0));
  w.emplace_back("wpe.weight", rng.normal({o.n_ctx, d}, 0.3));
  w.emplace_back("ln_f.weight", rng.normal({d}, 0.1, 1.0));
  w.emplace_back("ln_f.bias", rng.normal({d}, 0.05));
  for (int l = 0; l < o.n_layers; ++l) {
    w.emplace_back(layer_name("h.{L}.ln_1.weight", l), rng.normal({d}, 0.1, 1.0));
    w.emplace_back(layer_name("h.{L}.ln_1.bias", l), rng.normal({d}, 0.05));
    w.emplace_back(layer_name("h.{L}.attn.c_attn.weight", l), rng.normal({d, 3 * d}, 2.0 * s));
    w.emplace_back(layer_name("h.{L}.attn.c_attn.bias", l), rng.normal({3 * d}, 0.05));
    w.emplace_back(layer_name("h.{L}.attn.c_proj.weight", l), rng.normal({d, d}, s));
    w.emplace_back(layer_name("h.{L}.attn.c_proj.bias", l), rng.normal({d}, 0.05));
    w.emplace_back(layer_name("h.{L}.ln_2.weight", l), rng.normal({d}, 0.1, 1.0));
    w.emplace_back(layer_name("h.{L}.ln_2.bias", l), rng.normal({d}, 0.05));
    w.emplace_back(layer_name("h.{L}.mlp.c_fc.weight", l), rng.normal({d, m}, s));
    w.emplace_back(layer_name("h.{L}.mlp.c_fc.bias", l), rng.normal({m}, 0.05));
    w.emplace_back(layer_name("h.{L}.mlp.c_proj.weight", l), rng.normal({m, d}, 1.0 / std::sqrt(double(m))));
    w.emplace_back(layer_name("h.{L}.mlp.c_proj.bias", l), rng.normal({d}, 0.05));
  }
  return w;
}

// The SAE flavours cycled over the layers, covering both cfg generations and every activation and
// normalisation the loaders support.
struct Flavour {
  bool sae_lens6;
  sae::Activation activation;
  sae::Normalization normalization;
  bool apply_b_dec;
  bool center;
};
const Flavour kFlavours[] = {
    {true, sae::Activation::ReLU, sae::Normalization::None, true, false},
    {false, sae::Activation::ReLU, sae::Normalization::None, true, true},
    {true, sae::Activation::JumpReLU, sae::Normalization::ConstantNormRescale, false, false},
    {true, sae::Activation::TopK, sae::Normalization::LayerNorm, true, false},
};
constexpr int64_t kTopK = 16;

ojson sae_cfg(const Flavour& f, int layer, int64_t d_in, int64_t d_sae, const std::string& np_model) {
  const std::string hook = "blocks." + std::to_string(layer) + ".hook_resid_mid";
  const std::string np_id = np_model + "/" + std::to_string(layer) + "-demo-res";
  const ojson kwargs = f.center ? ojson{{"center_writing_weights", true}} : ojson::object();
  if (!f.sae_lens6) {
    // The older flat layout (SAE-Lens 3-5).
    return ojson{{"model_name", np_model},
                 {"hook_point", hook},
                 {"hook_point_layer", layer},
                 {"hook_point_head_index", nullptr},
                 {"d_in", d_in},
                 {"d_sae", d_sae},
                 {"dtype", "torch.float32"},
                 {"device", "cpu"},
                 {"activation_fn_str", "relu"},
                 {"apply_b_dec_to_input", f.apply_b_dec},
                 {"normalize_activations", false},
                 {"finetuning_scaling_factor", false},
                 {"context_size", 128},
                 {"prepend_bos", true},
                 {"dataset_path", "saetraj/demo-corpus"},
                 {"model_from_pretrained_kwargs", kwargs},
                 {"neuronpedia_id", np_id}};
  }
  ojson cfg{{"architecture", f.activation == sae::Activation::ReLU       ? "standard"
                             : f.activation == sae::Activation::JumpReLU ? "jumprelu"
                                                                          : "topk"},
            {"d_in", d_in},
            {"d_sae", d_sae},
            {"dtype", "float32"},
            {"device", "cpu"},
            {"apply_b_dec_to_input", f.apply_b_dec},
            {"normalize_activations", sae::normalization_name(f.normalization)},
            {"reshape_activations", "none"}};
  if (f.activation == sae::Activation::TopK) cfg["k"] = kTopK;
  cfg["metadata"] = ojson{{"sae_lens_version", "6.5.0"},
                          {"sae_lens_training_version", "6.5.0"},
                          {"model_name", np_model},
                          {"hook_name", hook},
                          {"hook_head_index", nullptr},
                          {"prepend_bos", true},
                          {"dataset_path", "saetraj/demo-corpus"},
                          {"context_size", 128},
                          {"model_from_pretrained_kwargs", kwargs},
                          {"neuronpedia_id", np_id}};
  return cfg;
}

}  // namespace

SynthResult synth_gpt2_fixture(const SynthOptions& o) {
  support::check_options(o);
  SAETRAJ_CHECK(o.d_model % o.n_heads == 0, InputError, "d_model must be a multiple of n_heads");
  c10::InferenceMode guard;
  Rng rng(o.seed);
  SynthResult r = support::sae_lens_result(o, "saetraj-demo-gpt2");

  // Tokenizer: byte-level BPE trained on the corpus, <|endoftext|> as BOS/EOS (GPT-2 does not add it).
  auto bpe = tokenizer::train_byte_level_bpe(demo_corpus(), o.vocab_size, {"<|endoftext|>"},
                                             tokenizer::PreTokenizer::GPT2);
  const int32_t eot = bpe.special_tokens.at("<|endoftext|>");
  bpe.bos_id = eot;
  bpe.add_bos = false;
  tokenizer::write_bpe_files(r.model_dir, bpe);
  const int64_t vocab = support::bpe_vocab_size(bpe);

  write_json(r.model_dir + "/config.json",
             ojson{{"architectures", {"GPT2LMHeadModel"}},
                   {"model_type", "gpt2"},
                   {"activation_function", "gelu_new"},
                   {"n_embd", o.d_model},
                   {"n_head", o.n_heads},
                   {"n_layer", o.n_layers},
                   {"n_inner", o.d_mlp},
                   {"n_positions", o.n_ctx},
                   {"n_ctx", o.n_ctx},
                   {"vocab_size", vocab},
                   {"layer_norm_epsilon", 1e-5},
                   {"bos_token_id", eot},
                   {"eos_token_id", eot},
                   {"tie_word_embeddings", true},
                   {"torch_dtype", "float32"},
                   {"saetraj_synthetic_seed", o.seed}});
  io::write_safetensors(r.model_dir + "/model.safetensors", gpt2_weights(o, vocab, rng), {{"format", "pt"}});

  // Calibration: the model's own residual stream (resid_mid, what the SAEs read) on the corpus.
  const auto model = model::load_model(r.model_dir);
  const tokenizer::ByteLevelBpe tok(bpe);
  const auto calibration = support::calibrate(*model, tok, eot, o.n_ctx);

  for (int l = 0; l < o.n_layers; ++l) {
    const Flavour& f = kFlavours[l % 4];
    const std::string dir = o.out + "/saes/layer_" + std::to_string(l);
    fs::create_directories(dir);
    const ojson cfg = sae_cfg(f, l, o.d_model, o.d_sae, r.neuronpedia_model);
    write_json(dir + "/cfg.json", cfg);

    // Preprocess the calibration vectors as the SAE will, b_dec aside.
    sae::Sae probe;
    probe.cfg.d_in = o.d_model;
    probe.cfg.normalization = f.normalization;
    probe.cfg.center_residual = f.center;
    probe.cfg.apply_b_dec_to_input = false;
    const auto x = probe.preprocess(calibration.resid_mid[l]);
    const auto b_dec = x.mean(0);
    const auto z = f.apply_b_dec ? x - b_dec : x;
    const double scale = z.pow(2).sum(1).mean().sqrt().item<double>();

    // Encoder directions: half taken from calibration vectors (features that fire on real contexts),
    // half random; unit length over the typical input norm.
    const auto directions = support::data_directions(z, o.d_sae, rng);
    const auto w_enc = (directions / scale).t().contiguous();  // [d_in, d_sae]
    const auto proj = torch::matmul(z, w_enc);                 // [M, d_sae]
    const auto cut = proj.quantile(1.0 - o.firing_rate, 0);    // fires on ~firing_rate of vectors

    std::vector<std::pair<std::string, torch::Tensor>> weights;
    weights.emplace_back("W_enc", w_enc);
    weights.emplace_back("W_dec", directions.contiguous());
    weights.emplace_back("b_dec", b_dec.contiguous());
    torch::Tensor b_enc, threshold;
    if (f.activation == sae::Activation::JumpReLU) {
      b_enc = torch::zeros({o.d_sae});
      threshold = cut.clamp_min(1e-3);
      weights.emplace_back("threshold", threshold);
    } else if (f.activation == sae::Activation::TopK) {
      b_enc = -std::get<0>(proj.median(0));
    } else {
      b_enc = -cut;
    }
    weights.emplace_back("b_enc", b_enc.contiguous());
    io::write_safetensors(dir + "/sae_weights.safetensors", weights);
    r.sae_dirs.push_back(dir);

    // Explanations in Neuronpedia's bulk export layout: each feature described by the context it fires
    // on most strongly; about one in eight is left without one, and batches are not index ranges.
    sae::Sae sae;
    sae.cfg.d_in = o.d_model;
    sae.cfg.d_sae = o.d_sae;
    sae.cfg.activation = f.activation;
    sae.cfg.topk_k = kTopK;
    sae.cfg.normalization = f.normalization;
    sae.cfg.center_residual = f.center;
    sae.cfg.apply_b_dec_to_input = f.apply_b_dec;
    sae.w_enc = w_enc;
    sae.b_enc = b_enc;
    sae.b_dec = b_dec;
    sae.threshold = threshold;
    const auto acts = sae.encode(calibration.resid_mid[l]);
    const std::string source = std::to_string(l) + "-demo-res";
    support::write_explanations(r.explanations_root, r.neuronpedia_model, source, acts, calibration.row_token,
                                calibration.row_prev, rng);
  }
  return r;
}

}  // namespace saetraj::synth
