// SPEC 1.2: the attention output at query q split into per-source-token contributions, their running
// sums, and the vectors the SAE encodes at each step.
#pragma once

#include <torch/torch.h>

#include <functional>

namespace saetraj::sweep {

// What one layer's attention left behind, for a sequence of N tokens.
struct AttentionParts {
  torch::Tensor pattern;   // [H, N, N] A_h[q, j]
  torch::Tensor head_out;  // [H, N, d] v_h[j] @ W_O[h]
  torch::Tensor bias;      // [d] b_O, or undefined
};

// The norm applied to partial sums of the attention output (identity when the model has none).
using PostAttention = std::function<torch::Tensor(const torch::Tensor&)>;

// a_j for j = 0..q: [q+1, d]. a_j = sum_h A_h[q, j] (v_h[j] @ W_O[h]) + b_O/(q+1).
torch::Tensor source_contributions(const AttentionParts& parts, int64_t q);

// Contributions for a block of queries [q_begin, q_end): [Q, N, d], zero for j > q (causal pattern), b_O
// spread as above over j <= q only.
torch::Tensor source_contributions_block(const AttentionParts& parts, int64_t q_begin, int64_t q_end);

// The vectors encoded for queries [q_begin, q_end), rows ordered by q then step s:
// x_0 = r_q and x_{j+1} = r_q + PostAttention(a_0 + ... + a_j), j = 0..q.  [sum (q+2), d]
// [NOTE] Why partial sums are normalised: models with a norm after attention (Gemma-2) add
// PostAttnNorm(attention output) to the residual; normalising each partial sum keeps every step on the
// same footing and makes the last step equal to resid_mid exactly. For j < q it is an approximation of
// "the residual had only tokens 0..j been attended to", kept on purpose (SPEC 1.2).
torch::Tensor evolution_inputs(const torch::Tensor& resid_pre, const AttentionParts& parts,
                               const PostAttention& post_attention, int64_t q_begin, int64_t q_end);

}  // namespace saetraj::sweep
