// The MLP decomposition (sweep/mlp_decompose.h, [NOTE] The MLP decomposition), held to an explicit
// decomposition written out here in double precision from the raw transcoder tensors: the active features'
// act_f W_dec[f] sorted by norm (ties by index), then b_dec, W_skip m, and the error y - transcoder(m). Invariants:
// the terms sum to the MLP output, the last partial sum is resid_post, a transcoder that reconstructs y exactly
// leaves a zero error term; the lists are the residual SAE's top-k of each partial sum computed independently,
// and each newcomer is attributed to the term added at its first appearance. On the synthetic GPT-2 and Gemma-2
// checkpoints: the captured MLP input equals the MLP's norm applied here to resid_mid from the checkpoint's own
// weights, and the decomposition of the captured MLP output ends on resid_post.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/sae/transcoder.h"
#include "saetraj/sweep/mlp_decompose.h"
#include "saetraj/synth/sae_formats.h"
#include "saetraj/synth/synth.h"
#include "test_support.h"

using namespace saetraj;
using saetraj::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

namespace {

constexpr int64_t kD = 24, kW = 120, kSaeW = 200, kK = 16;

torch::Tensor f64(const torch::Tensor& t) { return t.to(torch::kFloat64); }

struct Fixture {
  TempDir tmp;
  synth::RawTranscoder raw;
  sae::Transcoder tc;
  torch::Tensor resid_mid, mlp_in, mlp_out, resid_post;  // float32, [kD]
};

// A layer's last position: resid_mid, its RMS-normed MLP input, and a GELU MLP's output computed in double.
void make(Fixture& f, bool skip, uint64_t seed) {
  f.raw = synth::random_raw_transcoder(kD, kD, kW, skip, seed);
  synth::write_sae_lens_transcoder(f.tmp.file("tc"), skip ? "jumprelu_skip_transcoder" : "jumprelu_transcoder", 1, f.raw);
  f.tc = sae::load_transcoder(f.tmp.file("tc"), 1);
  auto gen = at::detail::createCPUGenerator(seed + 100);
  f.resid_mid = torch::randn({kD}, gen) * 3.0;
  const auto rm = f64(f.resid_mid);
  f.mlp_in = (rm / (rm.pow(2).mean() + 1e-6).sqrt()).to(torch::kFloat32);
  const auto w1 = f64(torch::randn({kD, 4 * kD}, gen)) / std::sqrt(double(kD));
  const auto w2 = f64(torch::randn({4 * kD, kD}, gen)) / std::sqrt(4.0 * kD);
  f.mlp_out = torch::gelu(f64(f.mlp_in).unsqueeze(0).mm(w1)).mm(w2).squeeze(0).to(torch::kFloat32);
  f.resid_post = (rm + f64(f.mlp_out)).to(torch::kFloat32);
}

// The explicit decomposition: terms in adding order, with the feature per term (-1 for the named ones).
std::pair<torch::Tensor, std::vector<int64_t>> explicit_terms(const synth::RawTranscoder& raw, const torch::Tensor& m,
                                                              const torch::Tensor& y) {
  const auto pre = f64(m).unsqueeze(0).mm(f64(raw.w_enc)).squeeze(0) + f64(raw.b_enc);
  std::vector<std::pair<double, int64_t>> active;  // (norm, feature)
  std::vector<torch::Tensor> contribution(kW);
  for (int64_t f = 0; f < kW; ++f) {
    const double p = pre[f].item<double>();
    if (p > raw.threshold[f].item<double>() && p > 0) {
      contribution[f] = p * f64(raw.w_dec[f]);
      active.emplace_back(contribution[f].norm().item<double>(), f);
    }
  }
  std::sort(active.begin(), active.end(), [](auto a, auto b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  std::vector<torch::Tensor> rows;
  std::vector<int64_t> features;
  auto sum = f64(raw.b_dec).clone();
  for (const auto& [norm, f] : active) {
    rows.push_back(contribution[f]);
    features.push_back(f);
    sum += contribution[f];
  }
  rows.push_back(f64(raw.b_dec));
  features.push_back(-1);
  if (raw.w_skip.defined()) {
    const auto skip = f64(raw.w_skip).mv(f64(m));
    rows.push_back(skip);
    features.push_back(-1);
    sum += skip;
  }
  rows.push_back(f64(y) - sum);
  features.push_back(-1);
  return {torch::stack(rows), features};
}

}  // namespace

TEST(MlpDecompose, TermsEqualTheExplicitDecomposition) {
  for (const bool skip : {false, true}) {
    SCOPED_TRACE(skip);
    Fixture f;
    make(f, skip, 7 + skip);
    const auto d = sweep::decompose_mlp(f.tc, f.mlp_in, f.mlp_out);
    const auto [want, features] = explicit_terms(f.raw, f.mlp_in, f.mlp_out);
    ASSERT_EQ(d.terms.size(0), want.size(0));
    EXPECT_EQ(d.feature, features);
    const int64_t n_features = static_cast<int64_t>(features.size()) - (skip ? 3 : 2);  // less bias, skip, error
    ASSERT_GE(n_features, 3) << "the fixture should activate several transcoder features";
    for (int64_t t = 0; t < n_features; ++t) {
      EXPECT_EQ(d.kind[t], sweep::MlpTermKind::Feature);
      EXPECT_NEAR(d.activation[t], d.terms[t].norm().item<double>() / f.raw.w_dec[d.feature[t]].norm().item<double>(), 1e-5);
      if (t > 0) EXPECT_GE(d.terms[t - 1].norm().item<double>(), d.terms[t].norm().item<double>());
    }
    EXPECT_EQ(d.kind[n_features], sweep::MlpTermKind::Bias);
    if (skip) EXPECT_EQ(d.kind[n_features + 1], sweep::MlpTermKind::Skip);
    EXPECT_EQ(d.kind.back(), sweep::MlpTermKind::Error);
    // Float32 activations times float64 decoder rows against the all-double formula.
    EXPECT_LT((d.terms - want).abs().max().item<double>(), 1e-5);
    // The terms sum to the MLP output, and the last partial sum is resid_post.
    EXPECT_LT((d.terms.sum(0) - f64(f.mlp_out)).abs().max().item<double>(), 1e-12);
    const auto x = sweep::mlp_evolution_inputs(f.resid_mid, d);
    ASSERT_EQ(x.size(0), d.terms.size(0) + 1);
    EXPECT_TRUE(torch::equal(x[0], f.resid_mid));
    EXPECT_LT((x[-1] - f.resid_post).abs().max().item<float>(), 1e-5f);
    // The error is a real part of the sum here (a random transcoder does not reconstruct this MLP).
    EXPECT_GT(d.terms[-1].norm().item<double>(), 0.1);
  }
}

TEST(MlpDecompose, ExactTranscoderLeavesNoError) {
  Fixture f;
  make(f, true, 21);
  const auto y = f.tc.forward(f.mlp_in.unsqueeze(0)).squeeze(0);
  const auto d = sweep::decompose_mlp(f.tc, f.mlp_in, y);
  EXPECT_LT(d.terms[-1].abs().max().item<double>(), 1e-5);
  EXPECT_EQ(d.kind.back(), sweep::MlpTermKind::Error);
}

TEST(MlpDecompose, NoActiveFeatureLeavesTheNamedTerms) {
  Fixture f;
  make(f, false, 31);
  f.tc.encoder.b_enc.fill_(-100.0);
  const auto d = sweep::decompose_mlp(f.tc, f.mlp_in, f.mlp_out);
  ASSERT_EQ(d.terms.size(0), 2);
  EXPECT_EQ(d.kind[0], sweep::MlpTermKind::Bias);
  EXPECT_EQ(d.kind[1], sweep::MlpTermKind::Error);
  EXPECT_LT((d.terms.sum(0) - f64(f.mlp_out)).abs().max().item<double>(), 1e-12);
}

TEST(MlpDecompose, ListsAndNewcomersMatchAnIndependentEncoding) {
  Fixture f;
  make(f, true, 41);
  const auto d = sweep::decompose_mlp(f.tc, f.mlp_in, f.mlp_out);
  // A residual ReLU SAE (no b_dec subtraction) encoding the partial sums.
  const auto raw = synth::random_raw_sae(kD, kSaeW, 42);
  sae::Sae s;
  s.cfg.d_in = kD;
  s.cfg.d_sae = kSaeW;
  s.cfg.activation = sae::Activation::ReLU;
  s.cfg.apply_b_dec_to_input = false;
  s.w_enc = raw.w_enc;
  s.b_enc = raw.b_enc;
  s.b_dec = raw.b_dec;
  const int64_t steps = d.terms.size(0) + 1;
  std::vector<int32_t> idx(steps * kK);
  std::vector<float> val(steps * kK);
  sweep::mlp_evolution_lists(s, f.resid_mid, d, kK, idx.data(), val.data());

  // Independently: partial sums in double, ReLU(x W_enc + b_enc), active features ranked.
  auto x = f64(f.resid_mid).clone();
  for (int64_t step = 0; step < steps; ++step) {
    if (step > 0) x += d.terms[step - 1];
    const auto acts = (x.unsqueeze(0).mm(f64(raw.w_enc)).squeeze(0) + f64(raw.b_enc)).relu();
    std::vector<int64_t> order(kSaeW);
    std::iota(order.begin(), order.end(), 0);
    const auto* a = acts.data_ptr<double>();
    std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return a[i] > a[j]; });
    for (int64_t slot = 0; slot < kK; ++slot) {
      const int64_t want = a[order[slot]] > 0 ? order[slot] : -1;
      EXPECT_EQ(idx[step * kK + slot], want) << "step " << step << " slot " << slot;
      if (want >= 0) EXPECT_NEAR(val[step * kK + slot], a[want], 1e-4);
    }
  }
  const auto newcomers = sweep::mlp_newcomers(idx.data(), steps, kK);
  ASSERT_FALSE(newcomers.empty()) << "the MLP should bring some residual features into the top-k";
  for (const auto& n : newcomers) {
    const auto row = [&](int64_t s) { return std::vector<int32_t>(idx.begin() + s * kK, idx.begin() + (s + 1) * kK); };
    EXPECT_EQ(row(steps - 1)[n.slot], n.feature);
    for (int64_t s = 0; s < n.step; ++s) {
      const auto before = row(s);
      EXPECT_EQ(std::count(before.begin(), before.end(), n.feature), 0);
    }
    const auto at = row(n.step);
    EXPECT_EQ(std::count(at.begin(), at.end(), n.feature), 1);
    EXPECT_EQ(n.term, n.step - 1);
  }
}

TEST(MlpDecompose, WrongSizesAreRefused) {
  Fixture f;
  make(f, false, 51);
  EXPECT_THAT([&] { sweep::decompose_mlp(f.tc, torch::zeros({kD + 1}), f.mlp_out); },
              ThrowsMessage<InputError>(HasSubstr("reads d_in = 24")));
  EXPECT_THAT([&] { sweep::decompose_mlp(f.tc, f.mlp_in, torch::zeros({kD - 1})); },
              ThrowsMessage<InputError>(HasSubstr("writes d_out = 24")));
}

namespace {

// The MLP input at every layer of a small checkpoint, held to its norm recomputed from the weights file, and the
// decomposition of the last position's MLP output ending on resid_post.
void check_model(const synth::SynthResult& r, bool gemma) {
  const auto m = model::load_model(r.model_dir);
  const auto& cfg = m->config();
  const std::vector<int32_t> ids{5, 17, 42, 99, 7, 63, 128, 11};
  const auto cap = m->forward(ids, {});
  const auto weights = io::SafetensorsSet::open_folder(r.model_dir);
  const auto d = cfg.d_model;
  for (int l = 0; l < cfg.n_layers; ++l) {
    SCOPED_TRACE(l);
    const auto& c = cap.layers[l];
    ASSERT_TRUE(c.mlp_in.defined());
    ASSERT_EQ(c.mlp_in.sizes(), c.resid_mid.sizes());
    const auto x = f64(c.resid_mid);
    torch::Tensor want;
    if (gemma) {
      const auto w = f64(weights.load("model.layers." + std::to_string(l) + ".pre_feedforward_layernorm.weight"));
      want = x / (x.pow(2).mean(-1, true) + cfg.norm_eps).sqrt() * (1.0 + w);
    } else {
      const auto w = f64(weights.load("h." + std::to_string(l) + ".ln_2.weight"));
      const auto b = f64(weights.load("h." + std::to_string(l) + ".ln_2.bias"));
      const auto centred = x - x.mean(-1, true);
      want = centred / (centred.pow(2).mean(-1, true) + cfg.norm_eps).sqrt() * w + b;
    }
    EXPECT_LT((f64(c.mlp_in) - want).abs().max().item<double>(), 1e-4 * std::max(1.0, want.abs().max().item<double>()));

    const auto raw = synth::random_raw_transcoder(d, d, 3 * d, true, 90 + l);
    TempDir tmp;
    synth::write_sae_lens_transcoder(tmp.file("tc"), "jumprelu_skip_transcoder", l, raw);
    const auto tc = sae::load_transcoder(tmp.file("tc"), l);
    const int64_t last = static_cast<int64_t>(ids.size()) - 1;
    const auto y = c.resid_post[last] - c.resid_mid[last];
    const auto dec = sweep::decompose_mlp(tc, c.mlp_in[last], y);
    const auto steps = sweep::mlp_evolution_inputs(c.resid_mid[last], dec);
    EXPECT_LT((steps[-1] - c.resid_post[last]).abs().max().item<float>(),
              1e-5f * std::max(1.0f, c.resid_post[last].abs().max().item<float>()));
  }
}

// A two-layer fixture small enough to check every layer against the plain computation.
synth::SynthOptions small_fixture(const TempDir& dir) {
  synth::SynthOptions o;
  o.out = dir.path();
  o.n_layers = 2;
  o.d_model = 32;
  o.n_heads = 4;
  o.n_kv_heads = 2;  // gemma2 only; gpt2 has no grouped heads
  o.d_mlp = 64;
  o.vocab_size = 320;
  o.n_ctx = 32;
  o.d_sae = 64;
  return o;
}

}  // namespace

TEST(MlpDecompose, Gpt2CapturedMlpInputAndResidPost) {
  TempDir dir("saetraj-mlp-gpt2");
  check_model(synth::synth_gpt2_fixture(small_fixture(dir)), false);
}

TEST(MlpDecompose, Gemma2CapturedMlpInputAndResidPost) {
  TempDir dir("saetraj-mlp-gemma2");
  check_model(synth::synth_gemma2_fixture(small_fixture(dir)), true);
}
