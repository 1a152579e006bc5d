// sweep::mlp_query (sweep/mlp_rows.h): what the sweep keeps of one query's MLP decomposition, held to an
// independent double-precision recomputation from the raw transcoder and SAE tensors: the explicit terms
// (active features by norm, ties by index, b_dec, W_skip m, error), their partial sums from resid_mid, each
// encoded as ReLU(x W_enc + b_enc) and ranked; the final list is x_T's top-k, and each slot's first appearance,
// term kind, transcoder feature and activation follow from those lists and terms.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "saetraj/sae/transcoder.h"
#include "saetraj/sweep/mlp_rows.h"
#include "saetraj/synth/sae_formats.h"
#include "test_support.h"

using namespace saetraj;
using saetraj::testing::TempDir;

namespace {

constexpr int64_t kD = 24, kW = 120, kSaeW = 200, kK = 16;

torch::Tensor f64(const torch::Tensor& t) { return t.to(torch::kFloat64); }

std::vector<int64_t> top_k(const torch::Tensor& x, const synth::RawSae& raw) {
  const auto acts = (x.unsqueeze(0).mm(f64(raw.w_enc)).squeeze(0) + f64(raw.b_enc)).relu().contiguous();
  std::vector<int64_t> order(kSaeW);
  std::iota(order.begin(), order.end(), 0);
  const auto* a = acts.data_ptr<double>();
  std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return a[i] > a[j]; });
  std::vector<int64_t> out(kK);
  for (int64_t s = 0; s < kK; ++s) out[s] = a[order[s]] > 0 ? order[s] : -1;
  return out;
}

}  // namespace

TEST(MlpRows, QueryMatchesAnIndependentRecomputation) {
  for (const bool skip : {false, true}) {
    SCOPED_TRACE(skip);
    TempDir tmp;
    const auto raw_tc = synth::random_raw_transcoder(kD, kD, kW, skip, 5 + skip);
    synth::write_sae_lens_transcoder(tmp.file("tc"), skip ? "jumprelu_skip_transcoder" : "jumprelu_transcoder", 1,
                                     raw_tc);
    const auto tc = sae::load_transcoder(tmp.file("tc"), 1);
    const auto raw = synth::random_raw_sae(kD, kSaeW, 42);
    sae::Sae s;
    s.cfg.d_in = kD;
    s.cfg.d_sae = kSaeW;
    s.cfg.activation = sae::Activation::ReLU;
    s.cfg.apply_b_dec_to_input = false;
    s.w_enc = raw.w_enc;
    s.b_enc = raw.b_enc;
    s.b_dec = raw.b_dec;
    auto gen = at::detail::createCPUGenerator(99 + skip);
    const auto resid_mid = torch::randn({kD}, gen) * 3.0;
    const auto rm = f64(resid_mid);
    const auto mlp_in = (rm / (rm.pow(2).mean() + 1e-6).sqrt()).to(torch::kFloat32);
    const auto mlp_out = torch::randn({kD}, gen) * 4.0;
    const auto resid_post = (rm + f64(mlp_out)).to(torch::kFloat32);

    int32_t steps = 0;
    std::vector<int32_t> final_idx(kK), ints(kK * sweep::kMlpSlotInts);
    std::vector<float> final_val(kK), act(kK);
    sweep::mlp_query(tc, s, mlp_in, resid_mid, resid_post, kK, &steps, final_idx.data(), final_val.data(),
                     ints.data(), act.data());

    // The explicit terms.
    const auto pre = f64(mlp_in).unsqueeze(0).mm(f64(raw_tc.w_enc)).squeeze(0) + f64(raw_tc.b_enc);
    std::vector<std::pair<double, int64_t>> active;
    for (int64_t f = 0; f < kW; ++f) {
      const double p = pre[f].item<double>();
      if (p > raw_tc.threshold[f].item<double>() && p > 0) {
        active.emplace_back((p * f64(raw_tc.w_dec[f])).norm().item<double>(), f);
      }
    }
    std::sort(active.begin(), active.end(),
              [](auto a, auto b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
    std::vector<torch::Tensor> terms;
    std::vector<int> kind;
    std::vector<int64_t> feature;
    auto sum = torch::zeros({kD}, torch::kFloat64);
    for (const auto& [norm, f] : active) {
      terms.push_back(pre[f].item<double>() * f64(raw_tc.w_dec[f]));
      kind.push_back(0), feature.push_back(f);
    }
    terms.push_back(f64(raw_tc.b_dec)), kind.push_back(1), feature.push_back(-1);
    if (skip) terms.push_back(f64(raw_tc.w_skip).mv(f64(mlp_in))), kind.push_back(2), feature.push_back(-1);
    for (const auto& t : terms) sum += t;
    terms.push_back(f64(mlp_out) - sum), kind.push_back(3), feature.push_back(-1);
    ASSERT_GE(active.size(), 3u);
    ASSERT_EQ(steps, static_cast<int32_t>(terms.size()) + 1);

    // The lists of every partial sum.
    std::vector<std::vector<int64_t>> lists;
    auto x = rm.clone();
    lists.push_back(top_k(x, raw));
    for (const auto& t : terms) lists.push_back(top_k(x += t, raw));
    const auto& last = lists.back();
    int newcomers = 0;
    for (int64_t slot = 0; slot < kK; ++slot) {
      SCOPED_TRACE(slot);
      EXPECT_EQ(final_idx[slot], last[slot]);
      const int32_t* got = ints.data() + slot * sweep::kMlpSlotInts;
      const int64_t f = last[slot];
      const bool before = f < 0 || std::count(lists[0].begin(), lists[0].end(), f) > 0;
      if (before) {
        EXPECT_EQ(got[0], -1);
        EXPECT_EQ(got[1], -1);
        EXPECT_EQ(got[2], -1);
        EXPECT_TRUE(std::isnan(act[slot]));
        continue;
      }
      ++newcomers;
      int64_t first = 1;
      while (std::count(lists[first].begin(), lists[first].end(), f) == 0) ++first;
      EXPECT_EQ(got[0], first);
      EXPECT_EQ(got[1], kind[first - 1]);
      EXPECT_EQ(got[2], feature[first - 1]);
      if (kind[first - 1] == 0) {
        EXPECT_NEAR(act[slot], pre[feature[first - 1]].item<double>(), 1e-4);
      } else {
        EXPECT_TRUE(std::isnan(act[slot]));
      }
    }
    EXPECT_GT(newcomers, 0) << "the MLP output should bring residual features into the top-k";
  }
}
