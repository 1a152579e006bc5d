// The factored method against the direct one: the same top-k lists (ties within float rounding aside) for
// every activation, preprocessing and post-attention norm the sweep supports; independence of the query
// split and of the column blocking; the cost model's choice.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "saetraj/core/error.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/factored.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/sweep/topk.h"

using namespace saetraj;

namespace {

struct Case {
  std::string name;
  sae::Activation activation = sae::Activation::ReLU;
  sae::Normalization normalization = sae::Normalization::None;
  bool centre = false;
  bool b_dec = true;
  bool b_o = false;
  bool post_norm = false;
};

struct Fixture {
  torch::Tensor resid;
  sweep::AttentionParts parts;
  model::PostAttentionNorm norm;
  sae::Sae sae;
};

Fixture make_fixture(const Case& c, int64_t heads, int64_t n, int64_t d, int64_t d_sae, uint64_t seed) {
  torch::manual_seed(seed);
  Fixture f;
  f.resid = torch::randn({n, d}) + 0.5;
  auto scores = torch::randn({heads, n, n}) * 2.0;
  scores.masked_fill_(torch::ones({n, n}, torch::kBool).triu(1), -std::numeric_limits<float>::infinity());
  f.parts.pattern = torch::softmax(scores, -1);
  f.parts.head_out = torch::randn({heads, n, d}) * 0.8;
  if (c.b_o) f.parts.bias = torch::randn({d}) * 0.3;
  f.norm.enabled = c.post_norm;
  f.norm.weight = 1.0 + 0.3 * torch::randn({d});
  f.norm.eps = 1e-6;
  auto& s = f.sae;
  s.cfg.d_in = d;
  s.cfg.d_sae = d_sae;
  s.cfg.activation = c.activation;
  s.cfg.topk_k = 7;
  s.cfg.normalization = c.normalization;
  s.cfg.center_residual = c.centre;
  s.cfg.apply_b_dec_to_input = c.b_dec;
  s.w_enc = torch::randn({d, d_sae}) / std::sqrt(static_cast<double>(d));
  s.b_enc = torch::randn({d_sae}) * 0.2 - 0.4;
  s.b_dec = torch::randn({d}) * 0.2;
  if (c.activation == sae::Activation::JumpReLU) s.threshold = torch::rand({d_sae}) * 0.5;
  return f;
}

struct Table {
  std::vector<int32_t> idx;
  std::vector<float> val;
};

Table run(const Fixture& f, sweep::Method method, int64_t q_begin, int64_t q_end, int64_t k, int64_t chunk_rows) {
  sweep::EvolutionRequest req;
  req.resid_pre = &f.resid;
  req.parts = &f.parts;
  req.post_norm = &f.norm;
  req.q_begin = q_begin;
  req.q_end = q_end;
  req.k = k;
  req.chunk_rows = chunk_rows;
  req.method = method;
  const int64_t rows = sweep::rows_of_prompt(q_end) - sweep::rows_of_prompt(q_begin);
  Table t{std::vector<int32_t>(rows * k), std::vector<float>(rows * k)};
  sweep::compute_evolution(f.sae, req, t.idx.data(), t.val.data());
  return t;
}

// The unfused reference: every partial sum encoded by Sae::encode (activation applied by LibTorch, TopK by
// torch.topk), then ranked. The direct method fuses the activations into its scan and must agree.
Table reference(const Fixture& f, int64_t q_begin, int64_t q_end, int64_t k) {
  const model::PostAttentionNorm& norm = f.norm;
  const auto inputs = sweep::evolution_inputs(f.resid, f.parts,
                                              [&norm](const torch::Tensor& x) { return norm.apply(x); }, q_begin, q_end);
  const auto acts = f.sae.encode(inputs).contiguous();
  Table t{std::vector<int32_t>(acts.size(0) * k), std::vector<float>(acts.size(0) * k)};
  sweep::topk_active(acts, k, t.idx.data(), t.val.data());
  return t;
}

// Same lists, except where two neighbouring values (or a value and the activation threshold) are closer
// than rounding can separate: there the order may legitimately differ.
void expect_same_lists(const Table& a, const Table& b, int64_t k, const std::string& what) {
  ASSERT_EQ(a.idx.size(), b.idx.size());
  const int64_t rows = static_cast<int64_t>(a.idx.size()) / k;
  int64_t compared = 0, unexplained = 0, active = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const int64_t at = r * k + i;
      const float va = a.val[at], vb = b.val[at];
      const float tol = 2e-4f * (1.0f + std::fabs(va));
      ++compared;
      active += a.idx[at] >= 0;
      EXPECT_NEAR(va, vb, tol) << what << " row " << r << " slot " << i;
      if (a.idx[at] == b.idx[at]) continue;
      const bool near_prev = i > 0 && std::fabs(a.val[at - 1] - va) < tol;
      const bool near_next = i + 1 < k && std::fabs(a.val[at + 1] - va) < tol;
      const bool near_edge = std::fabs(va) < tol || std::fabs(vb) < tol;  // entering or leaving the list
      if (!(near_prev || near_next || near_edge)) ++unexplained;
    }
  }
  EXPECT_EQ(unexplained, 0) << what;
  EXPECT_GT(active, compared / 20) << what << ": too few active features for a meaningful comparison";
}

}  // namespace

TEST(Factored, SameTopKAsDirectForEveryPreprocessing) {
  const std::vector<Case> cases = {
      {"relu", sae::Activation::ReLU},
      {"relu+b_O", sae::Activation::ReLU, sae::Normalization::None, false, true, true},
      {"jumprelu+postnorm", sae::Activation::JumpReLU, sae::Normalization::None, false, false, false, true},
      {"jumprelu+postnorm+b_O", sae::Activation::JumpReLU, sae::Normalization::None, false, true, true, true},
      {"topk", sae::Activation::TopK, sae::Normalization::None, false, true, true},
      {"centred", sae::Activation::ReLU, sae::Normalization::None, true, true, true},
      {"layer_norm", sae::Activation::ReLU, sae::Normalization::LayerNorm, false, true, true},
      {"layer_norm+postnorm", sae::Activation::ReLU, sae::Normalization::LayerNorm, true, true, true, true},
      {"constant_norm_rescale", sae::Activation::ReLU, sae::Normalization::ConstantNormRescale, false, true, true},
      {"constant_norm_rescale+centred+postnorm", sae::Activation::JumpReLU,
       sae::Normalization::ConstantNormRescale, true, true, true, true},
      {"expected_average_only_in", sae::Activation::ReLU, sae::Normalization::ExpectedAverageOnlyIn},
  };
  uint64_t seed = 11;
  for (const auto& c : cases) {
    const auto f = make_fixture(c, 3, 13, 24, 300, seed++);
    const int64_t k = 40;
    const auto direct = run(f, sweep::Method::Direct, 1, 13, k, 2048);
    const auto factored = run(f, sweep::Method::Factored, 1, 13, k, 2048);
    expect_same_lists(direct, factored, k, c.name);
    expect_same_lists(reference(f, 1, 13, k), direct, k, c.name + " (encode, then rank)");
  }
}

TEST(Factored, QuerySplitAndColumnBlocksGiveIdenticalRows) {
  Case c{"gemma-like", sae::Activation::JumpReLU, sae::Normalization::None, false, true, true, true};
  const auto f = make_fixture(c, 4, 40, 32, 3000, 5);
  const int64_t k = 25;
  const auto whole = run(f, sweep::Method::Factored, 1, 40, k, 1 << 20);
  // A rank holding only queries 17..32 writes exactly the rows the whole range has for them.
  const auto part = run(f, sweep::Method::Factored, 17, 33, k, 1 << 20);
  const int64_t offset = sweep::rows_of_prompt(17) * k;
  ASSERT_EQ(part.idx.size(), static_cast<size_t>((sweep::rows_of_prompt(33) - sweep::rows_of_prompt(17)) * k));
  for (size_t i = 0; i < part.idx.size(); ++i) {
    ASSERT_EQ(part.idx[i], whole.idx[offset + i]) << i;
    ASSERT_EQ(part.val[i], whole.val[offset + i]) << i;
  }
  // A small budget splits the features into column blocks merged across passes: same lists.
  ASSERT_LT(sweep::factored_column_block(40, 4, 3000, 16), 3000);
  const auto blocked = run(f, sweep::Method::Factored, 1, 40, k, 16);
  expect_same_lists(whole, blocked, k, "column blocks");
  const auto direct = run(f, sweep::Method::Direct, 1, 40, k, 64);
  expect_same_lists(direct, whole, k, "direct vs factored");
}

TEST(Factored, ListsAreRankedActiveAndPadded) {
  Case c{"relu", sae::Activation::ReLU};
  const auto f = make_fixture(c, 2, 9, 16, 200, 3);
  const int64_t k = 150;  // more slots than active features: padding must appear
  const auto t = run(f, sweep::Method::Factored, 1, 9, k, 2048);
  int64_t padded = 0;
  for (size_t r = 0; r < t.idx.size() / k; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const size_t at = r * k + i;
      if (t.idx[at] < 0) {
        ++padded;
        EXPECT_EQ(t.val[at], 0.0f);
        continue;
      }
      EXPECT_GT(t.val[at], 0.0f);
      if (i > 0) {
        ASSERT_GE(t.idx[at - 1], 0) << "an active feature after padding";
        EXPECT_TRUE(t.val[at - 1] > t.val[at] || (t.val[at - 1] == t.val[at] && t.idx[at - 1] < t.idx[at]));
      }
    }
  }
  EXPECT_GT(padded, 0);
}

TEST(Factored, CostModelPrefersFactoredForLongPrompts) {
  // Gemma-2-2b shapes: 8 heads, d_model 2304, 16k features.
  EXPECT_EQ(sweep::choose_method(2, 8, 2304, 16384), sweep::Method::Direct);
  EXPECT_EQ(sweep::choose_method(256, 8, 2304, 16384), sweep::Method::Factored);
  EXPECT_EQ(sweep::choose_method(64, 8, 2304, 65536), sweep::Method::Factored);
  // A residual narrower than heads x kAssemblyCost never pays for the assembly.
  EXPECT_EQ(sweep::choose_method(256, 8, 64, 1024), sweep::Method::Direct);
  EXPECT_EQ(sweep::parse_method("factored"), sweep::Method::Factored);
  try {
    sweep::parse_method("fast");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown method 'fast'"), std::string::npos) << e.what();
  }
}

TEST(Factored, Bf16EncoderGivesTheTablesOfItsWidenedCopy) {
  // sweep --sae-dtype bfloat16 keeps W_enc in bfloat16 and widens it block by block: the tables must be
  // those of a float32 SAE holding the same (rounded) weights, by either method.
  Case c{"bf16", sae::Activation::JumpReLU, sae::Normalization::None, false, true, true, true};
  auto f = make_fixture(c, 2, 10, 16, 5000, 9);  // wider than one 4096-column block
  auto widened = f;
  f.sae.w_enc = f.sae.w_enc.to(torch::kBFloat16);
  widened.sae.w_enc = f.sae.w_enc.to(torch::kFloat32);
  EXPECT_EQ(f.sae.bytes() + 2 * 16 * 5000, widened.sae.bytes());
  for (auto method : {sweep::Method::Direct, sweep::Method::Factored}) {
    const auto a = run(f, method, 1, 10, 30, 2048);
    const auto b = run(widened, method, 1, 10, 30, 2048);
    // Column blocks change the products' rounding in the last bit only.
    EXPECT_EQ(a.idx, b.idx) << sweep::method_name(method);
    for (size_t i = 0; i < a.val.size(); ++i) ASSERT_NEAR(a.val[i], b.val[i], 1e-5f * (1 + std::fabs(b.val[i])));
  }
}
