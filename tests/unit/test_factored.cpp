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
#include "evolution_cases.h"

using namespace saetraj;

using saetraj::testing::Case;
using saetraj::testing::Fixture;
using saetraj::testing::Table;
using saetraj::testing::expect_same_lists;
using saetraj::testing::make_fixture;
using saetraj::testing::reference;
using saetraj::testing::run;

TEST(Factored, SameTopKAsDirectForEveryPreprocessing) {
  const std::vector<Case>& cases = saetraj::testing::every_case();
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
