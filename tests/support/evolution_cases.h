// GoogleTest helpers over evolution_fixture.h: the unfused reference and the comparison of two tables up
// to ties within float rounding.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "evolution_fixture.h"

namespace saetraj::testing {

// The unfused reference: every partial sum encoded by Sae::encode (activation applied by LibTorch, TopK by
// torch.topk), then ranked. The direct method fuses the activations into its scan and must agree.
inline Table reference(const Fixture& f, int64_t q_begin, int64_t q_end, int64_t k) {
  const model::PostAttentionNorm& norm = f.norm;
  const auto inputs = sweep::evolution_inputs(f.resid, f.parts,
                                              [&norm](const torch::Tensor& x) { return norm.apply(x); }, q_begin, q_end);
  const auto acts = f.sae.encode(inputs).contiguous();
  Table t{std::vector<int32_t>(acts.size(0) * k), std::vector<float>(acts.size(0) * k)};
  sweep::topk_active(acts, k, t.idx.data(), t.val.data());
  return t;
}

// Same lists, except where two neighbouring values (or a value and the activation threshold) are closer
// than rounding can separate: there the order may legitimately differ (unexplained_differences).
inline void expect_same_lists(const Table& a, const Table& b, int64_t k, const std::string& what) {
  ASSERT_EQ(a.idx.size(), b.idx.size()) << what;
  int64_t active = 0;
  for (int32_t i : a.idx) active += i >= 0;
  EXPECT_EQ(unexplained_differences(a, b, k), 0) << what;
  EXPECT_GT(active, static_cast<int64_t>(a.idx.size()) / 20) << what << ": too few active features for a meaningful comparison";
}

}  // namespace saetraj::testing
