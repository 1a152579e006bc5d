// The method's pure pieces: per-source contributions, partial sums, top-k selection, row bookkeeping and
// the work partition. Tolerances: float32 sums of at most a few hundred terms of size ~1, so 1e-5
// absolute/relative.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "saetraj/core/error.h"
#include "saetraj/dist/partition.h"
#include "saetraj/sae/sae.h"
#include "saetraj/sweep/decompose.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/sweep/topk.h"

using namespace saetraj;

namespace {

// A causal attention pattern of H heads over N tokens, and per-head outputs, from a fixed seed.
sweep::AttentionParts random_parts(int64_t h, int64_t n, int64_t d, bool bias) {
  torch::manual_seed(7);
  auto scores = torch::randn({h, n, n});
  scores.masked_fill_(torch::ones({n, n}, torch::kBool).triu(1), -std::numeric_limits<float>::infinity());
  sweep::AttentionParts p{torch::softmax(scores, -1), torch::randn({h, n, d}), {}};
  if (bias) p.bias = torch::randn({d});
  return p;
}

// The attention output at every query, computed the ordinary way: sum_h A_h @ (v_h W_O) + b_O.
torch::Tensor attention_output(const sweep::AttentionParts& p) {
  auto out = torch::bmm(p.pattern, p.head_out).sum(0);
  if (p.bias.defined()) out = out + p.bias;
  return out;
}

}  // namespace

TEST(Rows, FormulaMatchesCount) {
  for (int64_t n = 0; n < 40; ++n) {
    int64_t count = 0;
    for (int64_t q = 1; q < n; ++q) count += q + 2;
    EXPECT_EQ(sweep::rows_of_prompt(n), count) << n;
  }
  EXPECT_EQ(sweep::rows_of_prompt(25), 24 * 29 / 2);
  EXPECT_EQ(sweep::row_of_query(1), 0);
  EXPECT_EQ(sweep::row_of_query(2), 3);
  EXPECT_EQ(sweep::row_of_query(3), 7);
}

TEST(Decompose, ContributionsSumToAttentionOutput) {
  for (bool bias : {false, true}) {
    const auto parts = random_parts(3, 9, 5, bias);
    const auto expected = attention_output(parts);
    for (int64_t q = 0; q < 9; ++q) {
      const auto a = sweep::source_contributions(parts, q);
      ASSERT_EQ(a.sizes(), (std::vector<int64_t>{q + 1, 5}));
      EXPECT_TRUE(torch::allclose(a.sum(0), expected[q], 1e-5, 1e-5)) << "q=" << q << " bias=" << bias;
    }
  }
}

TEST(Decompose, BlockEqualsSingleQueries) {
  const auto parts = random_parts(2, 7, 4, true);
  const auto block = sweep::source_contributions_block(parts, 2, 6);  // [4, 6, 4]
  for (int64_t q = 2; q < 6; ++q) {
    const auto single = sweep::source_contributions(parts, q);
    EXPECT_TRUE(torch::allclose(block[q - 2].slice(0, 0, q + 1), single, 1e-6, 1e-6));
    // Sources after q contribute nothing (causal pattern, b_O spread over j <= q only).
    if (q + 1 < 6) EXPECT_EQ(block[q - 2].slice(0, q + 1).abs().max().item<float>(), 0.0f);
  }
}

TEST(Decompose, EvolutionInputsStartAtResidAndEndAtResidMid) {
  const int64_t n = 8, d = 6;
  const auto parts = random_parts(3, n, d, true);
  const auto resid_pre = torch::randn({n, d});
  const auto resid_mid = resid_pre + attention_output(parts);
  const auto identity = [](const torch::Tensor& x) { return x; };
  const auto rows = sweep::evolution_inputs(resid_pre, parts, identity, 1, n);
  ASSERT_EQ(rows.size(0), sweep::rows_of_prompt(n));
  for (int64_t q = 1; q < n; ++q) {
    const int64_t r0 = sweep::row_of_query(q);
    EXPECT_TRUE(torch::equal(rows[r0], resid_pre[q])) << "step 0 is resid_pre at q=" << q;
    EXPECT_TRUE(torch::allclose(rows[r0 + q + 1], resid_mid[q], 1e-5, 1e-5)) << "last step is resid_mid at q=" << q;
    // Step j+1 adds a_j to step j.
    const auto a = sweep::source_contributions(parts, q);
    for (int64_t j = 0; j <= q; ++j) {
      EXPECT_TRUE(torch::allclose(rows[r0 + j + 1] - rows[r0 + j], a[j], 1e-5, 1e-5)) << q << "," << j;
    }
  }
}

TEST(Decompose, PostAttentionNormAppliesToEachPartialSum) {
  const int64_t n = 5, d = 4;
  const auto parts = random_parts(2, n, d, false);
  const auto resid_pre = torch::randn({n, d});
  const auto w = torch::randn({d});
  const auto rms = [&](const torch::Tensor& x) { return x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-6) * w; };
  const auto rows = sweep::evolution_inputs(resid_pre, parts, rms, 3, 4);  // q = 3 only
  const auto c = sweep::source_contributions(parts, 3).cumsum(0);
  for (int64_t j = 0; j <= 3; ++j) {
    EXPECT_TRUE(torch::allclose(rows[j + 1], resid_pre[3] + rms(c[j].unsqueeze(0)).squeeze(0), 1e-5, 1e-5));
  }
  // The last step is the true residual after a normed attention output.
  EXPECT_TRUE(torch::allclose(rows[4], resid_pre[3] + rms(attention_output(parts)[3].unsqueeze(0)).squeeze(0), 1e-5,
                              1e-5));
}

TEST(TopK, ActiveOnlySortedWithTiesByIndexAndPadded) {
  const auto acts = torch::tensor({{0.0f, 2.0f, 0.5f, 2.0f, -1.0f, 3.0f},
                                   {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f},
                                   {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f}});
  std::vector<int32_t> idx(3 * 4);
  std::vector<float> val(3 * 4);
  sweep::topk_active(acts, 4, idx.data(), val.data());
  EXPECT_EQ(std::vector<int32_t>(idx.begin(), idx.begin() + 4), (std::vector<int32_t>{5, 1, 3, 2}));
  EXPECT_EQ(std::vector<float>(val.begin(), val.begin() + 4), (std::vector<float>{3.0f, 2.0f, 2.0f, 0.5f}));
  EXPECT_EQ(std::vector<int32_t>(idx.begin() + 4, idx.begin() + 8), (std::vector<int32_t>{-1, -1, -1, -1}));
  EXPECT_EQ(std::vector<float>(val.begin() + 4, val.begin() + 8), (std::vector<float>{0, 0, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(idx.begin() + 8, idx.end()), (std::vector<int32_t>{0, 1, 2, 3}));
}

TEST(TopK, MatchesFullSortOnRandomData) {
  torch::manual_seed(3);
  const auto acts = torch::relu(torch::randn({50, 300}) - 1.0);
  const int64_t k = 40;
  std::vector<int32_t> idx(50 * k);
  std::vector<float> val(50 * k);
  sweep::topk_active(acts, k, idx.data(), val.data());
  for (int64_t r = 0; r < 50; ++r) {
    std::vector<std::pair<float, int32_t>> all;
    for (int32_t f = 0; f < 300; ++f) {
      const float v = acts[r][f].item<float>();
      if (v > 0) all.emplace_back(-v, f);
    }
    std::sort(all.begin(), all.end());
    for (int64_t i = 0; i < k; ++i) {
      if (i < static_cast<int64_t>(all.size())) {
        EXPECT_EQ(idx[r * k + i], all[i].second);
        EXPECT_EQ(val[r * k + i], -all[i].first);
      } else {
        EXPECT_EQ(idx[r * k + i], -1);
      }
    }
  }
}

// Dense rows with many ties: the scan prunes its candidates to the k best several times per row (every 64
// candidates for k = 10), so the running bound must never drop a feature that a full sort keeps, with and
// without bias and JumpReLU thresholds.
TEST(TopK, RunningBoundMatchesFullSortOnDenseTiedRows) {
  torch::manual_seed(5);
  const int64_t rows = 30, width = 4000, k = 10;
  const auto product = torch::round(torch::randn({rows, width}) * 4.0) / 4.0;  // values on a 0.25 grid
  const auto bias = torch::round(torch::randn({width})) / 4.0;
  const auto threshold = torch::rand({width}) * 0.5;
  // variant 0: plain; 1: bias; 2: bias and JumpReLU thresholds; 3: bias and a TopK SAE's keep of 3.
  for (int variant = 0; variant < 4; ++variant) {
    const bool with_bias = variant > 0, with_threshold = variant == 2;
    const int64_t keep = variant == 3 ? 3 : k;
    std::vector<int32_t> idx(rows * k);
    std::vector<float> val(rows * k);
    if (with_bias) {
      EXPECT_TRUE(sweep::topk_active_fused(product, bias.data_ptr<float>(),
                                           with_threshold ? threshold.data_ptr<float>() : nullptr, keep, k,
                                           idx.data(), val.data()));
    } else {
      sweep::topk_active(product, k, idx.data(), val.data());
    }
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<std::pair<float, int32_t>> all;
      for (int32_t f = 0; f < width; ++f) {
        const float v = product[r][f].item<float>() + (with_bias ? bias[f].item<float>() : 0.0f);
        if (v > 0 && (!with_threshold || v > threshold[f].item<float>())) all.emplace_back(-v, f);
      }
      ASSERT_GT(all.size(), static_cast<size_t>(10 * k)) << "the rows must be dense enough to prune";
      std::sort(all.begin(), all.end());
      for (int64_t i = 0; i < k; ++i) {
        const bool kept = i < keep;
        EXPECT_EQ(idx[r * k + i], kept ? all[i].second : -1) << "variant " << variant << " row " << r << " rank " << i;
        EXPECT_EQ(val[r * k + i], kept ? -all[i].first : 0.0f);
      }
    }
  }
}

// A case small enough to work out by hand. One head, d = 2, N = 3 tokens, query q = 2 only.
//   resid_pre[2] = (1, 0); head outputs v_j W_O: j0 = (0, 1), j1 = (2, 0), j2 = (0, -3)
//   pattern row q=2: (0.5, 0.25, 0.25); no bias, no norm.
//   a_0 = (0, 0.5), a_1 = (0.5, 0), a_2 = (0, -0.75)
//   steps: x0 = (1, 0); x1 = (1, 0.5); x2 = (1.5, 0.5); x3 = (1.5, -0.25)
// SAE (ReLU, no b_dec): W_enc columns f0 = (1, 0), f1 = (0, 1), f2 = (0, -1), f3 = (1, 1); b_enc = (0, 0, 0, -1)
//   x0 -> (1, 0, 0, 0)        top: f0
//   x1 -> (1, .5, 0, .5)      top: f0 (1), f1 (.5), f3 (.5): tie -> lower index first
//   x2 -> (1.5, .5, 0, 1)     top: f0, f3, f1
//   x3 -> (1.5, 0, .25, .25)  top: f0, f2, f3
TEST(Evolution, HandComputedCase) {
  sweep::AttentionParts parts;
  parts.pattern = torch::zeros({1, 3, 3});
  parts.pattern[0][2] = torch::tensor({0.5f, 0.25f, 0.25f});
  parts.pattern[0][1] = torch::tensor({0.5f, 0.5f, 0.0f});
  parts.pattern[0][0][0] = 1.0f;
  parts.head_out = torch::tensor({{{0.0f, 1.0f}, {2.0f, 0.0f}, {0.0f, -3.0f}}});
  const auto resid_pre = torch::tensor({{0.0f, 0.0f}, {0.0f, 0.0f}, {1.0f, 0.0f}});
  sae::Sae s;
  s.cfg.d_in = 2;
  s.cfg.d_sae = 4;
  s.cfg.apply_b_dec_to_input = false;
  s.w_enc = torch::tensor({{1.0f, 0.0f, 0.0f, 1.0f}, {0.0f, 1.0f, -1.0f, 1.0f}});
  s.b_enc = torch::tensor({0.0f, 0.0f, 0.0f, -1.0f});
  s.b_dec = torch::zeros({2});
  sweep::EvolutionRequest req;
  req.resid_pre = &resid_pre;
  req.parts = &parts;
  req.q_begin = 2;
  req.q_end = 3;
  req.k = 3;
  for (auto method : {sweep::Method::Direct, sweep::Method::Factored}) {
    req.method = method;
    std::vector<int32_t> idx(4 * 3);
    std::vector<float> val(4 * 3);
    sweep::compute_evolution(s, req, idx.data(), val.data());
    EXPECT_EQ(idx, (std::vector<int32_t>{0, -1, -1, 0, 1, 3, 0, 3, 1, 0, 2, 3})) << sweep::method_name(method);
    const std::vector<float> expected = {1, 0, 0, 1, .5f, .5f, 1.5f, 1, .5f, 1.5f, .25f, .25f};
    for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(val[i], expected[i], 1e-6) << i;
  }
}

TEST(Evolution, NonFiniteInputIsReportedWithQueries) {
  auto parts = random_parts(1, 4, 3, false);
  parts.head_out[0][1][2] = std::numeric_limits<float>::quiet_NaN();
  const auto resid_pre = torch::zeros({4, 3});
  sae::Sae s;
  s.cfg.d_in = 3;
  s.cfg.d_sae = 2;
  s.w_enc = torch::ones({3, 2});
  s.b_enc = torch::zeros({2});
  s.b_dec = torch::zeros({3});
  sweep::EvolutionRequest req;
  req.resid_pre = &resid_pre;
  req.parts = &parts;
  req.q_begin = 1;
  req.q_end = 4;
  req.k = 2;
  for (auto method : {sweep::Method::Direct, sweep::Method::Factored}) {
    req.method = method;
    std::vector<int32_t> idx(100);
    std::vector<float> val(100);
    try {
      sweep::compute_evolution(s, req, idx.data(), val.data());
      FAIL() << "expected NumericError from the " << sweep::method_name(method) << " method";
    } catch (const NumericError& e) {
      EXPECT_NE(std::string(e.what()).find("NaN or Inf for queries 1..3"), std::string::npos) << e.what();
    }
  }
}

TEST(Partition, EveryLayerOnceGroupsContiguousRanksAllUsed) {
  for (int ranks = 1; ranks <= 12; ++ranks) {
    for (int layers = 1; layers <= 30; layers += 3) {
      std::vector<double> costs(layers);
      for (int i = 0; i < layers; ++i) costs[i] = 1.0 + (i % 3);
      const auto plan = dist::plan_work(ranks, costs);
      ASSERT_EQ(static_cast<int>(plan.groups.size()), std::min(ranks, layers));
      int next = 0;
      std::set<int> seen_ranks;
      for (const auto& g : plan.groups) {
        ASSERT_FALSE(g.layer_indices.empty());
        ASSERT_FALSE(g.ranks.empty());
        for (int l : g.layer_indices) EXPECT_EQ(l, next++);
        for (int r : g.ranks) EXPECT_TRUE(seen_ranks.insert(r).second);
      }
      EXPECT_EQ(next, layers);
      EXPECT_EQ(static_cast<int>(seen_ranks.size()), ranks);
    }
  }
}

TEST(Partition, BalancedLayerGroups) {
  // 26 equal layers over 2 ranks: 13 + 13; over 4: no group more than one layer above the mean.
  const std::vector<double> costs(26, 1.0);
  auto plan = dist::plan_work(2, costs);
  EXPECT_EQ(plan.groups[0].layer_indices.size(), 13u);
  EXPECT_EQ(plan.groups[1].layer_indices.size(), 13u);
  plan = dist::plan_work(4, costs);
  for (const auto& g : plan.groups) EXPECT_LE(std::abs(g.cost - 6.5), 1.0);
}

TEST(Partition, ChunksCoverEveryRowOnceAndAreRankIndependent) {
  for (int64_t n : {2, 3, 10, 25, 64}) {
    for (int64_t chunk_rows : {1, 5, 64, 4096}) {
      const auto chunks = dist::query_chunks(n, chunk_rows);
      int64_t expect_q = 1;
      for (const auto& [a, b] : chunks) {
        EXPECT_EQ(a, expect_q);
        EXPECT_LT(a, b);
        EXPECT_TRUE(sweep::rows_of_prompt(b) - sweep::rows_of_prompt(a) <= chunk_rows || b == a + 1);
        expect_q = b;
      }
      EXPECT_EQ(expect_q, n);
      int64_t largest_chunk = 0;
      for (const auto& [a, b] : chunks) largest_chunk = std::max(largest_chunk, sweep::rows_of_prompt(b) - sweep::rows_of_prompt(a));
      for (int parts = 1; parts <= 5; ++parts) {
        size_t next = 0;
        int64_t biggest = 0, total = 0;
        for (int part = 0; part < parts; ++part) {
          const auto [first, last] = dist::chunks_for_member(chunks, parts, part);
          EXPECT_EQ(first, next);
          next = std::max(next, last);
          int64_t rows = 0;
          for (size_t c = first; c < last; ++c) rows += sweep::rows_of_prompt(chunks[c].second) - sweep::rows_of_prompt(chunks[c].first);
          biggest = std::max(biggest, rows);
          total += rows;
        }
        EXPECT_EQ(next, chunks.size());
        EXPECT_EQ(total, sweep::rows_of_prompt(n));
        // A member's share is cut at whole chunks: at most an equal share plus one chunk.
        EXPECT_LE(biggest, total / parts + largest_chunk) << "n " << n << ", chunk_rows " << chunk_rows << ", parts " << parts;
      }
    }
  }
}

TEST(Partition, QuerySplitIsBalancedForLongPrompts) {
  const auto chunks = dist::query_chunks(256, 256);
  for (int parts : {2, 3, 4}) {
    int64_t biggest = 0;
    for (int part = 0; part < parts; ++part) {
      const auto [first, last] = dist::chunks_for_member(chunks, parts, part);
      int64_t rows = 0;
      for (size_t c = first; c < last; ++c) rows += sweep::rows_of_prompt(chunks[c].second) - sweep::rows_of_prompt(chunks[c].first);
      biggest = std::max(biggest, rows);
    }
    EXPECT_LT(biggest, 1.05 * sweep::rows_of_prompt(256) / parts + 256) << parts;
  }
}
