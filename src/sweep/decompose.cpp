#include "saetraj/sweep/decompose.h"

#include "saetraj/core/error.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::sweep {

torch::Tensor source_contributions(const AttentionParts& parts, int64_t q) {
  SAETRAJ_CHECK(q >= 0 && q < parts.pattern.size(1), InputError, "query ", q, " is outside [0, ",
                parts.pattern.size(1), ")");
  // [H, q+1] x [H, q+1, d] summed over heads -> [q+1, d]
  const auto weights = parts.pattern.select(1, q).slice(1, 0, q + 1);
  const auto values = parts.head_out.slice(1, 0, q + 1);
  auto a = (weights.unsqueeze(-1) * values).sum(0);
  if (parts.bias.defined()) a = a + parts.bias / static_cast<double>(q + 1);
  return a;
}

torch::Tensor source_contributions_block(const AttentionParts& parts, int64_t q_begin, int64_t q_end) {
  const int64_t n = parts.pattern.size(1);
  SAETRAJ_CHECK(0 <= q_begin && q_begin < q_end && q_end <= n, InputError, "query block [", q_begin, ", ",
                q_end, ") is outside [0, ", n, ")");
  const int64_t width = q_end;  // sources j < q_end suffice
  // einsum hqj,hjd->qjd: a contraction over heads only, done as one batched product per source j
  // ([J, Q, H] x [J, H, d]) so no [H, Q, J, d] intermediate is built.
  const auto pattern = parts.pattern.slice(1, q_begin, q_end).slice(2, 0, width);  // [H, Q, J]
  const auto values = parts.head_out.slice(1, 0, width);                             // [H, J, d]
  auto a = torch::bmm(pattern.permute({2, 1, 0}), values.permute({1, 0, 2})).permute({1, 0, 2});  // [Q, J, d]
  if (parts.bias.defined()) {
    const auto options = parts.pattern.options().dtype(torch::kFloat32);
    const auto q = torch::arange(q_begin, q_end, options);
    const auto j = torch::arange(0, width, options);
    const auto share = (j.unsqueeze(0) <= q.unsqueeze(1)).to(torch::kFloat32) / (q.unsqueeze(1) + 1.0);  // [Q, J]
    a = a + share.unsqueeze(-1) * parts.bias;
  }
  return a;
}

torch::Tensor evolution_inputs(const torch::Tensor& resid_pre, const AttentionParts& parts,
                               const PostAttention& post_attention, int64_t q_begin, int64_t q_end) {
  const auto a = source_contributions_block(parts, q_begin, q_end);  // [Q, J, d]
  const auto cumulative = a.cumsum(1);
  std::vector<torch::Tensor> pieces;
  pieces.reserve(2 * (q_end - q_begin));
  for (int64_t q = q_begin; q < q_end; ++q) {
    const auto r = resid_pre.select(0, q).unsqueeze(0);               // [1, d]
    const auto sums = cumulative.select(0, q - q_begin).slice(0, 0, q + 1);  // [q+1, d]
    pieces.push_back(r);
    pieces.push_back(r + post_attention(sums));
  }
  return torch::cat(pieces, 0);
}

}  // namespace saetraj::sweep
