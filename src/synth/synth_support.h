// Pieces shared by the synthetic fixtures: a portable random generator, JSON and gzip writers, and the
// Neuronpedia-style explanation export written from calibration activations.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "saetraj/core/strings.h"
#include "saetraj/model/model.h"
#include "saetraj/sae/sae.h"
#include "saetraj/synth/synth.h"
#include "saetraj/tokenizer/byte_level_bpe.h"
#include "saetraj/tokenizer/sentencepiece_tokenizer.h"
#include "saetraj/tokenizer/tokenizer.h"

namespace saetraj::synth::support {

// splitmix64 + Box-Muller: the same numbers on every machine and LibTorch version.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform();
  double normal();
  torch::Tensor normal(std::vector<int64_t> shape, double std, double mean = 0.0);

 private:
  uint64_t state_;
};

// The fixture's own activations on the demo corpus, for calibrating SAEs and describing features: one
// forward pass per corpus line (BOS first, cut to the context), rows of all lines stacked per layer.
struct Calibration {
  std::vector<torch::Tensor> resid_mid;   // per layer, [rows, d_model]
  std::vector<torch::Tensor> resid_post;  // per layer, [rows, d_model]
  std::vector<std::string> row_token;     // the token at each row
  std::vector<std::string> row_prev;      // the token before it ("" at the start of a line)
};
Calibration calibrate(const model::Model& model, const tokenizer::Tokenizer& tok, int32_t bos, int64_t n_ctx);

// Refuses, before anything is written, options that would make a fixture its own loaders reject (a size
// that is not positive) or a folder that cannot be created (--out, or a folder above it, is a file).
// Messages name the synth command-line option.
void check_options(const SynthOptions& o);

void write_json(const std::string& path, const nlohmann::ordered_json& j);
void write_gzip_lines(const std::string& path, const std::vector<std::string>& lines);

// The sizes of a decoder fixture's tensors: hidden, MLP, heads, key/value heads, head size, vocabulary.
struct DecoderShape {
  int64_t d, m, h, kv, hd, vocab;
};

// The attention sizes the options ask for (vocab left 0 for the caller to fill once its tokenizer is
// trained): kv heads --kv-heads, or half the heads when their number is even; the head size
// SynthOptions::head_dim where `honours_head_dim` and it is set, else d_model / heads. Refuses sizes that do
// not divide, before anything is written.
DecoderShape decoder_shape(const SynthOptions& o, bool honours_head_dim);

// Which decoder family's tensors decoder_weights writes, all in the Hugging Face layout without biases.
struct DecoderLayout {
  // Gemma: norm weights stored as w for (1 + w), so drawn around 0; an embedding scaled by 1/sqrt(d) (the
  // model multiplies by sqrt(d)); pre- and post-feed-forward norms around the MLP. Otherwise Llama: norm
  // weights around 1, unit embedding rows.
  bool gemma = false;
  bool qk_norm = false;  // per-head q_norm / k_norm weights [head_dim] (Qwen3, Gemma-3)
  bool tied = false;     // no lm_head.weight: the embedding is the unembedding
};

// The model's weights, drawn in a fixed order from `rng` (same seed, same tensors); projections scaled so
// that attention patterns are far from uniform.
std::vector<std::pair<std::string, torch::Tensor>> decoder_weights(const SynthOptions& o, const DecoderShape& s,
                                                                   const DecoderLayout& layout, Rng& rng);

// One past the largest id of a trained BPE's pieces and special tokens: the embedding's row count.
int64_t bpe_vocab_size(const tokenizer::BpeModel& bpe);

// The folders of a fixture with SAE-Lens SAEs, the model folder <out>/model created: SAEs at
// <out>/saes/layer_{layer}, explanations under <out>/explanations/<model_id>.
SynthResult sae_lens_result(const SynthOptions& o, const std::string& model_id);

// Writes the SAE-Lens SAE `s` of layer `layer` to <out>/saes/layer_<layer> and adds the folder to
// r.sae_dirs: cfg.json is `cfg` plus "metadata" (model_name r.neuronpedia_model, hook
// blocks.<layer>.hook_resid_post, prepend_bos, neuronpedia_id "<model>/<layer>-<source_set>"),
// sae_weights.safetensors holds W_enc, W_dec = `directions`, b_enc and b_dec; then the explanations of its
// features on the calibration rows `x` of that layer (write_explanations).
void write_sae_lens_fixture_sae(SynthResult& r, const SynthOptions& o, int layer, const std::string& source_set,
                                nlohmann::ordered_json cfg, const sae::Sae& s, const torch::Tensor& directions,
                                const torch::Tensor& x, const Calibration& calibration, Rng& rng);

// What the Gemma fixtures start alike: the options checked (decoder_shape, vocab filled), the model folder
// <out>/<model_id> (named like the Neuronpedia model id: that is where a sweep takes the id of Gemma Scope
// SAEs from for a model that is not one of Google's, sae::gemma_scope_model_id), Gemma Scope SAEs under
// <out>/saes, and a Gemma-like SentencePiece tokenizer (BOS 2 added by default, EOS 1) trained in the
// model folder.
struct GemmaStart {
  SynthResult result;
  tokenizer::SentencePieceTokenizer tok;
  DecoderShape shape;
};
GemmaStart start_gemma_fixture(const SynthOptions& o, const std::string& model_id);

// Encoder directions for `d_sae` features over rows `z` [rows, d]: every even feature a random row of z
// plus a little noise, the odd ones random; each of unit length.
torch::Tensor data_directions(const torch::Tensor& z, int64_t d_sae, Rng& rng);

// One JumpReLU SAE calibrated on residual rows `x` [rows, d]: encoder directions half from the data, half
// random; each feature's threshold at the (1 - firing_rate) quantile of its pre-activation; no b_dec
// subtraction (Gemma Scope 1 and 2).
sae::Sae calibrated_jumprelu_sae(const torch::Tensor& x, int64_t d_sae, double firing_rate, Rng& rng);

using saetraj::layer_name;

// Writes <root>/<model_id>/<source>/explanations/batch-{0,1}.jsonl.gz: each feature described by the
// calibration token it fires on most strongly (`acts` [rows, d_sae], one row per entry of row_token and
// row_prev); about one in eight is left without one, and batches are not index ranges.
void write_explanations(const std::string& root, const std::string& model_id, const std::string& source,
                        const torch::Tensor& acts, const std::vector<std::string>& row_token,
                        const std::vector<std::string>& row_prev, Rng& rng);

}  // namespace saetraj::synth::support
