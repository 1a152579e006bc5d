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
