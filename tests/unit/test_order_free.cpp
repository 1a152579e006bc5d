// Order-free views (issue 15 part 2, NOTE in include/saetraj/sweep/order_free.h) against brute force in
// double precision: the activation game written out as loops, leave-one-out from it, and the exact
// Shapley values over every permutation of q+1 <= 6 tokens, which the sampled estimate must approach within
// its standard error; the estimator recomputed from the same orders; the orders themselves.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <tuple>
#include <set>
#include <vector>

#include "evolution_cases.h"
#include "saetraj/sweep/head_split.h"
#include "saetraj/sweep/order_free.h"

using namespace saetraj;
using saetraj::testing::Case;
using saetraj::testing::Fixture;
using saetraj::testing::make_fixture;

namespace {

// v_f(S) for a bitmask S of source tokens of query q, every step written out over plain copies of the
// fixture's tensors; values are memoised per (q, feature, S).
class Game {
 public:
  explicit Game(const Fixture& f)
      : f_(f), heads_(f.parts.pattern.size(0)), n_(f.parts.pattern.size(1)), d_(f.resid.size(1)),
        pattern_(plain(f.parts.pattern)), head_out_(plain(f.parts.head_out)), resid_(plain(f.resid)),
        w_(plain(f.sae.w_enc)), b_enc_(plain(f.sae.b_enc)), b_dec_(plain(f.sae.b_dec)),
        bias_(f.parts.bias.defined() ? plain(f.parts.bias) : std::vector<double>(d_, 0.0)),
        g_(f.norm.enabled ? plain(f.norm.weight) : std::vector<double>(d_, 1.0)),
        threshold_(f.sae.threshold.defined() ? plain(f.sae.threshold) : std::vector<double>()) {}

  double operator()(int64_t q, uint32_t set, int64_t feature) {
    const auto key = std::make_tuple(q, set, feature);
    const auto it = memo_.find(key);
    if (it != memo_.end()) return it->second;
    return memo_[key] = compute(q, set, feature);
  }

 private:
  static std::vector<double> plain(const torch::Tensor& t) {
    const auto c = t.to(torch::kFloat64).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  }
  double compute(int64_t q, uint32_t set, int64_t feature) const {
    const int64_t d = d_, d_sae = f_.sae.cfg.d_sae;
    std::vector<double> c(d, 0.0);
    for (int64_t i = 0; i <= q; ++i) {
      if (!(set >> i & 1u)) continue;
      for (int64_t e = 0; e < d; ++e) {
        double a = bias_[e] / static_cast<double>(q + 1);
        for (int64_t h = 0; h < heads_; ++h) a += pattern_[(h * n_ + q) * n_ + i] * head_out_[(h * n_ + i) * d + e];
        c[e] += a;
      }
    }
    double rho = 1.0;
    if (f_.norm.enabled) {
      double ms = 0.0;
      for (double v : c) ms += v * v / static_cast<double>(d);
      rho = 1.0 / std::sqrt(ms + f_.norm.eps);
    }
    std::vector<double> x(d);
    for (int64_t e = 0; e < d; ++e) x[e] = resid_[q * d + e] + rho * c[e] * g_[e];
    const auto& cfg = f_.sae.cfg;
    if (cfg.center_residual || cfg.normalization == sae::Normalization::LayerNorm) {
      const double mean = std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(d);
      for (double& v : x) v -= mean;
    }
    double sq = 0.0;
    for (double v : x) sq += v * v;
    double scale = 1.0;
    if (cfg.normalization == sae::Normalization::LayerNorm) scale = 1.0 / (std::sqrt(sq / static_cast<double>(d - 1)) + 1e-5);
    if (cfg.normalization == sae::Normalization::ConstantNormRescale) scale = std::sqrt(static_cast<double>(d) / sq);
    double pre = b_enc_[feature];
    for (int64_t e = 0; e < d; ++e) {
      pre += (scale * x[e] - (cfg.apply_b_dec_to_input ? b_dec_[e] : 0.0)) * w_[e * d_sae + feature];
    }
    if (cfg.activation == sae::Activation::JumpReLU && !(pre > threshold_[feature])) return 0.0;
    return std::max(pre, 0.0);
  }

  const Fixture& f_;
  int64_t heads_, n_, d_;
  std::vector<double> pattern_, head_out_, resid_, w_, b_enc_, b_dec_, bias_, g_, threshold_;
  std::map<std::tuple<int64_t, uint32_t, int64_t>, double> memo_;
};

std::vector<int32_t> lists_of(const Fixture& f, int64_t q, int64_t k) {
  return saetraj::testing::run(f, sweep::Method::Direct, q, q + 1, k, 4096).idx;
}

sweep::EvolutionRequest request_of(const Fixture& f) {
  sweep::EvolutionRequest req;
  req.resid_pre = &f.resid;
  req.parts = &f.parts;
  req.post_norm = &f.norm;
  return req;
}

// Each token's marginal contribution along one order of the n tokens (`order`, token indices): v(S + j) - v(S)
// as j joins, from S = {} (whose value is v_none).
std::vector<double> marginals(Game& game, int64_t q, int64_t feature, const int64_t* order, int64_t n,
                              double v_none) {
  std::vector<double> out(n, 0.0);
  uint32_t set = 0;
  double before = v_none;
  for (int64_t t = 0; t < n; ++t) {
    set |= 1u << order[t];
    const double now = game(q, set, feature);
    out[order[t]] = now - before;
    before = now;
  }
  return out;
}

// The sampled Shapley estimate recomputed from the game on the same orders (`sampled`, [orders, n]): per
// token the mean marginal contribution and its standard error.
struct Estimate {
  std::vector<double> mean, se;
};
Estimate estimate_on_orders(Game& game, int64_t q, int64_t feature, const std::vector<int64_t>& sampled, int64_t n,
                            int64_t orders, double v_none) {
  std::vector<double> sum(n, 0.0), sumsq(n, 0.0);
  for (int64_t m = 0; m < orders; ++m) {
    const auto delta = marginals(game, q, feature, sampled.data() + m * n, n, v_none);
    for (int64_t j = 0; j < n; ++j) sum[j] += delta[j], sumsq[j] += delta[j] * delta[j];
  }
  Estimate e{std::vector<double>(n), std::vector<double>(n)};
  for (int64_t j = 0; j < n; ++j) {
    e.mean[j] = sum[j] / orders;
    e.se[j] = std::sqrt(std::max(0.0, (sumsq[j] - orders * e.mean[j] * e.mean[j]) / (orders - 1)) / orders);
  }
  return e;
}

}  // namespace

TEST(OrderFree, OrdersArePermutationsReproducibleAndSeeded) {
  const auto a = sweep::sample_orders(6, 500, 42), b = sweep::sample_orders(6, 500, 42);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, sweep::sample_orders(6, 500, 43));
  std::set<std::vector<int64_t>> distinct;
  std::vector<int64_t> first_counts(6, 0);
  for (int64_t m = 0; m < 500; ++m) {
    std::vector<int64_t> order(a.begin() + m * 6, a.begin() + (m + 1) * 6), sorted = order;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
    distinct.insert(order);
    ++first_counts[order[0]];
  }
  EXPECT_GT(distinct.size(), 250u);  // 720 permutations; a broken shuffle repeats a few
  for (int64_t c : first_counts) EXPECT_NEAR(c, 500 / 6.0, 35);  // each token first about 1/6 of the time
  EXPECT_NE(sweep::order_seed(0, 1, 2, 3), sweep::order_seed(0, 1, 2, 4));
  EXPECT_NE(sweep::order_seed(0, 1, 2, 3), sweep::order_seed(0, 2, 1, 3));
  EXPECT_EQ(sweep::order_seed(7, 1, 2, 3), sweep::order_seed(7, 1, 2, 3));
}

TEST(OrderFree, LeaveOneOutAndShapleyAgainstEveryPermutation) {
  int64_t checked = 0;
  for (const auto& c : saetraj::testing::every_case()) {
    const auto f = make_fixture(c, 3, 6, 12, 120, 17);
    const auto req = request_of(f);
    Game game(f);
    const int64_t k = 16, slots = 8, orders = 400;
    for (int64_t q = 1; q < 6; ++q) {  // up to 6 tokens: 720 permutations
      const int64_t n = q + 1;
      const auto lists = lists_of(f, q, k);
      const auto entry = sweep::entry_steps(lists.data(), q, k, slots);
      std::vector<float> out(slots * n * sweep::kOrderColumns), full(slots), empty(slots);
      const uint64_t seed = sweep::order_seed(5, 0, 0, q);
      sweep::order_free(f.sae, req, q, lists.data(), k, slots, orders, seed, out.data(), full.data(), empty.data());
      std::vector<int64_t> perm(n);
      for (int64_t slot = 0; slot < slots; ++slot) {
        const float* row = out.data() + slot * n * sweep::kOrderColumns;
        if (entry[slot] < 0) {
          EXPECT_TRUE(std::isnan(row[0]) && std::isnan(full[slot])) << c.name;
          continue;
        }
        const int64_t feature = lists[(q + 1) * k + slot];
        const uint32_t all = (1u << n) - 1;
        const double v_all = game(q, all, feature), v_none = game(q, 0, feature);
        const double tol = 1e-5 * (1.0 + std::fabs(v_all));
        EXPECT_NEAR(full[slot], v_all, tol) << c.name;
        EXPECT_NEAR(empty[slot], v_none, tol) << c.name;
        // Exact Shapley over every permutation.
        std::vector<double> exact(n, 0.0);
        std::iota(perm.begin(), perm.end(), 0);
        int64_t permutations = 0;
        do {
          const auto delta = marginals(game, q, feature, perm.data(), n, v_none);
          for (int64_t j = 0; j < n; ++j) exact[j] += delta[j];
          ++permutations;
        } while (std::next_permutation(perm.begin(), perm.end()));
        // The sampled estimate from the same orders, recomputed from the game.
        const auto est = estimate_on_orders(game, q, feature, sweep::sample_orders(n, orders, seed), n, orders, v_none);
        double total = 0.0;
        for (int64_t j = 0; j < n; ++j) {
          exact[j] /= static_cast<double>(permutations);
          const float* cell = row + j * sweep::kOrderColumns;
          EXPECT_NEAR(cell[sweep::kOrderLoo], game(q, all & ~(1u << j), feature), tol) << c.name << " j=" << j;
          EXPECT_NEAR(cell[sweep::kOrderShapley], est.mean[j], tol) << c.name;
          EXPECT_NEAR(cell[sweep::kOrderStderr], est.se[j], tol) << c.name;
          // The estimate approaches the exact value within its standard error.
          EXPECT_LE(std::fabs(cell[sweep::kOrderShapley] - exact[j]), 4.5 * cell[sweep::kOrderStderr] + tol)
              << c.name << " q=" << q << " j=" << j;
          total += cell[sweep::kOrderShapley];
        }
        EXPECT_NEAR(total, v_all - v_none, tol * n) << c.name << ": the estimates sum to v(all) - v({})";
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 60);
}

TEST(OrderFree, ShapleyEstimateShrinksTowardsTheExactValue) {
  // More orders, smaller standard errors (about 1/sqrt(M)).
  Case c{"jumprelu+postnorm", sae::Activation::JumpReLU, sae::Normalization::None, false, false, false, true};
  const auto f = make_fixture(c, 2, 6, 12, 150, 23);
  const auto req = request_of(f);
  const int64_t q = 5, n = 6, k = 16, slots = 10;
  const auto lists = lists_of(f, q, k);
  std::vector<float> a(slots * n * 3), b(slots * n * 3), fa(slots), ea(slots);
  sweep::order_free(f.sae, req, q, lists.data(), k, slots, 64, 1, a.data(), fa.data(), ea.data());
  sweep::order_free(f.sae, req, q, lists.data(), k, slots, 4096, 1, b.data(), fa.data(), ea.data());
  double se64 = 0, se4096 = 0;
  for (size_t i = sweep::kOrderStderr; i < a.size(); i += 3) {
    if (std::isnan(a[i])) continue;
    se64 += a[i], se4096 += b[i];
  }
  ASSERT_GT(se64, 0.0);
  EXPECT_NEAR(se4096 / se64, 0.125, 0.04);
  try {
    sweep::order_free(f.sae, req, q, lists.data(), k, slots, 1, 1, a.data(), fa.data(), ea.data());
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--orders must be at least 2"), std::string::npos);
  }
}

TEST(OrderFree, LongPromptMatchesTheGameOnTheSameOrders) {
  // The token-coordinate computation (NOTE The game in token coordinates) for a query of 23 tokens, every
  // case: each leave-one-out value and each sampled Shapley value and standard error recomputed from the
  // game on the same orders.
  for (const auto& c : saetraj::testing::every_case()) {
    const auto f = make_fixture(c, 3, 24, 12, 120, 31);
    const auto req = request_of(f);
    Game game(f);
    const int64_t q = 22, n = q + 1, k = 16, slots = 6, orders = 12;
    const auto lists = lists_of(f, q, k);
    const auto entry = sweep::entry_steps(lists.data(), q, k, slots);
    std::vector<float> out(slots * n * sweep::kOrderColumns), full(slots), empty(slots);
    const uint64_t seed = sweep::order_seed(9, 1, 2, q);
    sweep::order_free(f.sae, req, q, lists.data(), k, slots, orders, seed, out.data(), full.data(), empty.data());
    const auto sampled = sweep::sample_orders(n, orders, seed);
    int64_t checked = 0;
    for (int64_t slot = 0; slot < slots; ++slot) {
      if (entry[slot] < 0) continue;
      const int64_t feature = lists[(q + 1) * k + slot];
      const uint32_t all = (1u << n) - 1;
      const double v_all = game(q, all, feature), v_none = game(q, 0, feature);
      const double tol = 1e-5 * (1.0 + std::fabs(v_all));
      EXPECT_NEAR(full[slot], v_all, tol) << c.name;
      const auto est = estimate_on_orders(game, q, feature, sampled, n, orders, v_none);
      for (int64_t j = 0; j < n; ++j) {
        const float* cell = out.data() + (slot * n + j) * sweep::kOrderColumns;
        EXPECT_NEAR(cell[sweep::kOrderLoo], game(q, all & ~(1u << j), feature), tol) << c.name << " j=" << j;
        EXPECT_NEAR(cell[sweep::kOrderShapley], est.mean[j], tol) << c.name << " j=" << j;
        EXPECT_NEAR(cell[sweep::kOrderStderr], est.se[j], tol) << c.name << " j=" << j;
      }
      ++checked;
    }
    EXPECT_GT(checked, 0) << c.name;
  }
}
