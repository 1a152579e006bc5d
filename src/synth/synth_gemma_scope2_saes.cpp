#include <algorithm>
#include <cmath>
#include <filesystem>

#include "saetraj/core/error.h"
#include "saetraj/model/model.h"
#include "saetraj/sae/gemma_scope.h"
#include "saetraj/synth/sae_formats.h"
#include "saetraj/synth/synth.h"
#include "saetraj/tokenizer/tokenizer.h"
#include "synth_support.h"

namespace saetraj::synth {
namespace {

// A random JumpReLU SAE that fires on the rows `x` [rows, d] of a real model: directions drawn in the
// per-dimension standardised space (x - mean) / std, half of them from standardised rows, so that no single
// dimension decides the pre-activations (a real Gemma's residual has a few dimensions hundreds of times larger
// than the rest: random directions in the raw space fire only on the rows where those are large); b_enc folds
// the centring in (Gemma Scope 2 subtracts no b_dec); each feature's threshold at the (1 - firing_rate)
// quantile of its pre-activations over the rows. The decoder rows are the unit directions.
RawSae standardised_jumprelu_sae(const torch::Tensor& rows, int64_t d_sae, double firing_rate, support::Rng& rng) {
  const auto x = rows.to(torch::kDouble);
  const int64_t d = x.size(1);
  const auto mean = x.mean(0);
  const auto sd = x.std(0, /*unbiased=*/false) + 1e-6 * x.abs().max();
  const auto xs = (x - mean) / sd;
  auto directions = rng.normal({d_sae, d}, 1.0).to(torch::kDouble);
  for (int64_t feat = 0; feat < d_sae; feat += 2) {
    const int64_t row = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(x.size(0)));
    directions[feat] = xs[row] / xs[row].norm() * std::sqrt(double(d)) + 0.3 * directions[feat];
  }
  directions = directions / directions.norm(2, 1, true);
  const auto w_enc = (directions / sd).t().contiguous();
  const auto b_enc = -torch::matmul(mean, w_enc);
  const auto threshold = (torch::matmul(x, w_enc) + b_enc).quantile(1.0 - firing_rate, 0).clamp_min(1e-6);
  auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat).contiguous(); };
  return RawSae{f32(w_enc), f32(directions), f32(b_enc), f32(mean), f32(threshold)};
}

}  // namespace

SynthResult synth_gemma_scope2_saes(const std::string& model_dir, const SynthOptions& o) {
  SAETRAJ_CHECK(o.d_sae > 0 && o.firing_rate > 0 && o.firing_rate < 1, InputError,
                "Gemma Scope 2 SAEs need d_sae > 0 and a firing rate in (0, 1)");
  c10::InferenceMode guard;
  const auto model = model::load_model(model_dir);
  const auto& config = model->config();
  SAETRAJ_CHECK(config.bos_token_id.has_value(), InputError, model_dir,
                "/config.json names no bos_token_id; Gemma Scope 2 SAEs are calibrated with <bos> first");
  const auto tok = tokenizer::load_tokenizer(model_dir, config.bos_token_id);
  support::Rng rng(o.seed);
  SynthResult r;
  r.model_dir = model_dir;
  r.gemmascope_root = o.out;
  r.gemmascope_width = sae::gemma_scope_width_label(o.d_sae);
  const auto calibration =
      support::calibrate(*model, *tok, *config.bos_token_id, std::min<int64_t>(o.n_ctx, config.n_ctx));
  // Calibrated without the <bos> rows, as Gemma Scope 2 was trained (SAE-Lens leaves special tokens out): a
  // real Gemma's residual at <bos> is tens of times longer than at text tokens (3000 against 100 after layer
  // 0 of Gemma 3 270M), so with those rows each feature's top quantile is set by <bos> alone. And on
  // resid_mid, the last partial sum, which is what the sweep encodes with each layer's SAE.
  const std::string bos_text = tok->token_text(*config.bos_token_id);
  std::vector<int64_t> text_rows;
  for (size_t i = 0; i < calibration.row_token.size(); ++i) {
    if (calibration.row_token[i] != bos_text) text_rows.push_back(static_cast<int64_t>(i));
  }
  SAETRAJ_CHECK(text_rows.size() >= 2, InputError, model_dir,
                ": the calibration corpus gave fewer than 2 tokens after <bos>");
  const auto rows = torch::tensor(text_rows, torch::kLong);
  for (int l = 0; l < config.n_layers; ++l) {
    GemmaScope2Spec spec;
    spec.layer = l;
    spec.width = r.gemmascope_width;
    spec.l0 = "medium";
    spec.model_name = "saetraj-random";
    r.sae_dirs.push_back(write_gemma_scope2_sae(
        r.gemmascope_root, spec,
        standardised_jumprelu_sae(calibration.resid_mid[l].index_select(0, rows), o.d_sae, o.firing_rate, rng)));
  }
  return r;
}

}  // namespace saetraj::synth
