// The head split (issue 15 part 1, NOTE in include/saetraj/sweep/head_split.h) against an independent
// brute-force computation in double precision: explicit per-head sums written out as loops, the SAE's
// preprocessing written out again, and, without normalisations, each head's part as the pre-activation
// change that adding that head's piece alone to the previous step makes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>
#include <tuple>
#include <vector>

#include "evolution_cases.h"
#include "saetraj/graph/trajectory_graph.h"
#include "saetraj/sweep/head_split.h"
#include "saetraj/sweep/rows.h"

using namespace saetraj;
using saetraj::testing::Case;
using saetraj::testing::Fixture;
using saetraj::testing::make_fixture;

namespace {

using Vec = std::vector<double>;

struct Brute {
  const Fixture& f;
  int64_t heads, n, d;
  explicit Brute(const Fixture& fx)
      : f(fx), heads(fx.parts.pattern.size(0)), n(fx.parts.pattern.size(1)), d(fx.resid.size(1)) {}

  double A(int64_t h, int64_t q, int64_t j) const { return f.parts.pattern[h][q][j].item<double>(); }
  double U(int64_t h, int64_t j, int64_t e) const { return f.parts.head_out[h][j][e].item<double>(); }
  double g(int64_t e) const { return f.norm.enabled ? f.norm.weight[e].item<double>() : 1.0; }
  double bias(int64_t e) const { return f.parts.bias.defined() ? f.parts.bias[e].item<double>() : 0.0; }
  bool centres() const {
    return f.sae.cfg.center_residual || f.sae.cfg.normalization == sae::Normalization::LayerNorm;
  }

  // c_j of query q.
  Vec partial_sum(int64_t q, int64_t j) const {
    Vec c(d, 0.0);
    for (int64_t i = 0; i <= j; ++i) {
      for (int64_t e = 0; e < d; ++e) {
        double a = bias(e) / static_cast<double>(q + 1);
        for (int64_t h = 0; h < heads; ++h) a += A(h, q, i) * U(h, i, e);
        c[e] += a;
      }
    }
    return c;
  }
  double rho(const Vec& c) const {
    if (!f.norm.enabled) return 1.0;
    double ms = 0.0;
    for (double v : c) ms += v * v;
    return 1.0 / std::sqrt(ms / static_cast<double>(d) + f.norm.eps);
  }
  // x_s of query q (s = 0: the residual alone).
  Vec step(int64_t q, int64_t s) const {
    Vec x(d);
    for (int64_t e = 0; e < d; ++e) x[e] = f.resid[q][e].item<double>();
    if (s == 0) return x;
    const Vec c = partial_sum(q, s - 1);
    const double r = rho(c);
    for (int64_t e = 0; e < d; ++e) x[e] += r * c[e] * g(e);
    return x;
  }
  Vec centred(Vec x) const {
    if (!centres()) return x;
    double mean = 0.0;
    for (double v : x) mean += v / static_cast<double>(d);
    for (double& v : x) v -= mean;
    return x;
  }
  double sigma(const Vec& x) const {
    const Vec c = centred(x);
    double sq = 0.0;
    for (double v : c) sq += v * v;
    switch (f.sae.cfg.normalization) {
      case sae::Normalization::LayerNorm: return 1.0 / (std::sqrt(sq / static_cast<double>(d - 1)) + 1e-5);
      case sae::Normalization::ConstantNormRescale: return std::sqrt(static_cast<double>(d)) / std::sqrt(sq);
      default: return 1.0;
    }
  }
  double w(int64_t e, int64_t feature) const { return f.sae.w_enc[e][feature].to(torch::kFloat64).item<double>(); }
  double pre(const Vec& x, int64_t feature) const {
    const Vec c = centred(x);
    const double s = sigma(x);
    double v = f.sae.b_enc[feature].item<double>();
    for (int64_t e = 0; e < d; ++e) {
      const double b_dec = f.sae.cfg.apply_b_dec_to_input ? f.sae.b_dec[e].item<double>() : 0.0;
      v += (s * c[e] - b_dec) * w(e, feature);
    }
    return v;
  }
  // sigma_{j+1} rho_j (Pi (v . g)) . W_enc[:, f]
  double scaled(int64_t q, int64_t j, const Vec& v, int64_t feature) const {
    Vec vg(d);
    for (int64_t e = 0; e < d; ++e) vg[e] = v[e] * g(e);
    vg = centred(vg);
    double dot = 0.0;
    for (int64_t e = 0; e < d; ++e) dot += vg[e] * w(e, feature);
    return sigma(step(q, j + 1)) * rho(partial_sum(q, j)) * dot;
  }
};

std::vector<int32_t> lists_of(const Fixture& f, int64_t q, int64_t k) {
  auto t = saetraj::testing::run(f, sweep::Method::Direct, q, q + 1, k, 4096);
  return t.idx;
}

}  // namespace

TEST(HeadSplit, EntryStepsAreTheTrajectoriesOfTheGraphs) {
  for (const auto& c : saetraj::testing::every_case()) {
    const auto f = make_fixture(c, 3, 12, 16, 200, 31);
    const int64_t k = 20, top_t = 6;
    for (int64_t q = 1; q < 12; ++q) {
      const auto lists = lists_of(f, q, k);
      const auto entry = sweep::entry_steps(lists.data(), q, k, top_t + 1);
      std::set<std::tuple<int, int, int>> mine, graphs;
      for (int64_t slot = 0; slot <= top_t; ++slot) {
        if (entry[slot] >= 0) mine.insert({static_cast<int>(entry[slot] - 1), lists[(q + 1) * k + slot], static_cast<int>(slot)});
      }
      for (const auto& t : graph::find_trajectories({lists.data(), static_cast<int>(q + 2), static_cast<int>(k)}, top_t)) {
        graphs.insert({t.source_token, t.feature, t.final_position});
      }
      EXPECT_EQ(mine, graphs) << c.name << " q=" << q;
    }
  }
}

TEST(HeadSplit, MatchesExplicitPerHeadSums) {
  int64_t checked = 0, checked_linear = 0;
  for (const auto& c : saetraj::testing::every_case()) {
    const auto f = make_fixture(c, 3, 9, 12, 120, 7);
    const Brute b(f);
    const int64_t k = 16, slots = 8, heads = 3, columns = sweep::split_columns(heads);
    const bool linear = !f.norm.enabled && (c.normalization == sae::Normalization::None ||
                                            c.normalization == sae::Normalization::ExpectedAverageOnlyIn);
    sweep::EvolutionRequest req;
    req.resid_pre = &f.resid;
    req.parts = &f.parts;
    req.post_norm = &f.norm;
    for (int64_t q = 1; q < 9; ++q) {
      const auto lists = lists_of(f, q, k);
      const auto entry = sweep::entry_steps(lists.data(), q, k, slots);
      std::vector<float> out(slots * columns);
      sweep::head_split(f.sae, req, q, lists.data(), k, slots, out.data());
      for (int64_t slot = 0; slot < slots; ++slot) {
        const float* row = out.data() + slot * columns;
        if (entry[slot] < 0) {
          for (int64_t col = 0; col < columns; ++col) EXPECT_TRUE(std::isnan(row[col])) << c.name;
          continue;
        }
        const int64_t feature = lists[(q + 1) * k + slot], s = entry[slot], j = s - 1;
        const auto prev = b.step(q, s - 1), next = b.step(q, s);
        const double jump = b.pre(next, feature) - b.pre(prev, feature);
        double scale = std::fabs(jump);
        std::vector<double> expected(heads);
        for (int64_t h = 0; h < heads; ++h) {
          Vec piece(b.d);
          for (int64_t e = 0; e < b.d; ++e) piece[e] = b.A(h, q, j) * b.U(h, j, e);
          expected[h] = b.scaled(q, j, piece, feature);
          scale += std::fabs(expected[h]);
        }
        Vec bias_piece(b.d);
        for (int64_t e = 0; e < b.d; ++e) bias_piece[e] = b.bias(e) / static_cast<double>(q + 1);
        const double bias = b.scaled(q, j, bias_piece, feature);
        const double tol = 2e-5 * (1.0 + scale);
        EXPECT_NEAR(row[sweep::kSplitJump], jump, tol) << c.name;
        EXPECT_NEAR(row[sweep::kSplitBias], bias, tol) << c.name;
        double sum = bias;
        for (int64_t h = 0; h < heads; ++h) {
          EXPECT_NEAR(row[sweep::kSplitHeads + h], expected[h], tol) << c.name << " head " << h;
          sum += expected[h];
        }
        EXPECT_NEAR(row[sweep::kSplitUnassigned], jump - sum, tol) << c.name;
        ++checked;
        if (linear) {
          // No normalisation: the split is the jump's exact decomposition, and each head's part is what
          // adding that head's piece alone to the previous step does to the pre-activation.
          EXPECT_NEAR(row[sweep::kSplitUnassigned], 0.0, tol) << c.name;
          for (int64_t h = 0; h < heads; ++h) {
            Vec x = prev;
            for (int64_t e = 0; e < b.d; ++e) x[e] += b.A(h, q, j) * b.U(h, j, e);
            EXPECT_NEAR(row[sweep::kSplitHeads + h], b.pre(x, feature) - b.pre(prev, feature), tol) << c.name;
          }
          ++checked_linear;
        }
      }
    }
  }
  EXPECT_GT(checked, 100);
  EXPECT_GT(checked_linear, 20);
}

TEST(HeadSplit, NormalisationsLeaveAnUnassignedPart) {
  // With Gemma's post-attention norm the scalars change from step to step: the unassigned part is real.
  Case c{"postnorm", sae::Activation::ReLU, sae::Normalization::None, false, true, false, true};
  const auto f = make_fixture(c, 2, 10, 12, 150, 3);
  sweep::EvolutionRequest req;
  req.resid_pre = &f.resid;
  req.parts = &f.parts;
  req.post_norm = &f.norm;
  const int64_t k = 16, slots = 10, columns = sweep::split_columns(2);
  double largest = 0.0;
  for (int64_t q = 1; q < 10; ++q) {
    const auto lists = lists_of(f, q, k);
    std::vector<float> out(slots * columns);
    sweep::head_split(f.sae, req, q, lists.data(), k, slots, out.data());
    for (int64_t slot = 0; slot < slots; ++slot) {
      const float u = out[slot * columns + sweep::kSplitUnassigned];
      if (!std::isnan(u)) largest = std::max(largest, static_cast<double>(std::fabs(u)));
    }
  }
  EXPECT_GT(largest, 1e-3);
}

TEST(HeadSplit, Bf16EncoderIsReadThroughItsWidenedColumns) {
  Case c{"bf16", sae::Activation::JumpReLU, sae::Normalization::None, false, true, true, true};
  auto f = make_fixture(c, 2, 8, 12, 100, 4);
  f.sae.w_enc = f.sae.w_enc.to(torch::kBFloat16);
  auto widened = f;
  widened.sae.w_enc = f.sae.w_enc.to(torch::kFloat32);
  sweep::EvolutionRequest req, req_w;
  req.resid_pre = &f.resid, req.parts = &f.parts, req.post_norm = &f.norm;
  req_w.resid_pre = &widened.resid, req_w.parts = &widened.parts, req_w.post_norm = &widened.norm;
  const int64_t k = 12, slots = 6, columns = sweep::split_columns(2);
  for (int64_t q = 1; q < 8; ++q) {
    const auto lists = lists_of(widened, q, k);
    std::vector<float> a(slots * columns), w(slots * columns);
    sweep::head_split(f.sae, req, q, lists.data(), k, slots, a.data());
    sweep::head_split(widened.sae, req_w, q, lists.data(), k, slots, w.data());
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::isnan(w[i])) {
        EXPECT_TRUE(std::isnan(a[i]));
      } else {
        EXPECT_EQ(a[i], w[i]) << i;
      }
    }
  }
}
