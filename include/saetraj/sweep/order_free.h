// Whether the order of adding matters (issue 15, part 2): two order-free views of a newcomer's activation
// at the full prompt, per source token j, for each trajectory slot of a query.
//
// [NOTE] The activation game. For a set S of source tokens of query q, x_S = r + phi(sum_{i in S} a_i) (phi:
// the post-attention norm, identity without one) and v_f(S) is feature f's activation when the SAE encodes
// x_S: ReLU or JumpReLU of its pre-activation. For TopK SAEs v_f is the ReLU of the pre-activation: the
// competition with the other features for the SAE's k places is not part of the game (it would need every
// feature of every coalition). v_f({0..q}) is the activation in the last step, v_f({}) the one in step 0.
//  - Leave-one-out: v_f(all \ {j}) for every j; the trajectory "disappears" without j when that is 0 (the
//    feature is no longer active at all).
//  - Sampled Shapley: M orders of the q+1 tokens, each a uniformly random permutation; token j's value in an
//    order is v_f(tokens before j and j) - v_f(tokens before j); its Shapley estimate is the mean over the M
//    orders and the standard error is the sample standard deviation / sqrt(M). In every order the values sum
//    to v_f(all) - v_f({}), so the estimates do too.
// Orders come from splitmix64 seeded by (seed, prompt, layer, q) through order_seed and a Fisher-Yates
// shuffle written here, so they are reproducible, the same on every platform and independent of the rank
// that computes the query. The values are computed in float64 LibTorch ops on the request's device with
// shapes fixed by (q, M, F) only, so the results are identical for any rank count.
//
// [NOTE] The game in token coordinates. M orders of q+1 tokens need M (q+1) coalitions; encoding each as a
// d-vector cost M (q+1) d F multiply-adds per query (8x a plain sweep at M = 64). Every step of v_f is a
// sum over the coalition's tokens or a scalar of such sums, so it is computed from per-token terms once:
// with c the coalition's sum of a_i, rho = rsqrt(|c|^2/d + eps) (1 without a post-attention norm), w_i =
// Pi (g * a_i) and u = Pi r (Pi: centring when the SAE centres or layer-normalises, g: the norm's weight),
// the preprocessed input is y = u + rho sum_i w_i, and
//   pre_f = sigma (u.W_f + rho sum_i w_i.W_f) + b_enc[f] - b_dec.W_f,
//   |c|^2 = sum_{i,k} a_i.a_k,  |y|^2 = u.u + 2 rho sum_i u.w_i + rho^2 sum_{i,k} w_i.w_k,
// sigma = 1/(sqrt(|y|^2/(d-1)) + 1e-5) (layer norm), sqrt(d)/|y| (constant-norm rescale) or 1. Per query
// this needs [q+1, F] projections w_i.W_f and, only with the norms that use them, the Gram matrices of a and
// w ([q+1, q+1]); an order's prefixes are then cumulative sums of permuted rows (and of the permuted Gram
// matrices' lower triangles): M (q+1) (F + q+1) operations instead of M (q+1) d F.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "saetraj/sae/sae.h"
#include "saetraj/sweep/evolution.h"

namespace saetraj::sweep {

// Columns per (slot, source token): leave-one-out activation, Shapley estimate, its standard error.
inline constexpr int64_t kOrderLoo = 0, kOrderShapley = 1, kOrderStderr = 2, kOrderColumns = 3;

// The seed of one query's orders.
uint64_t order_seed(uint64_t seed, int64_t prompt, int64_t layer, int64_t q);
// `orders` permutations of 0..n-1 from `seed` (row-major [orders, n]).
std::vector<int64_t> sample_orders(int64_t n, int64_t orders, uint64_t seed);

// For query q: writes slots x (q+1) x kOrderColumns floats into `out`, NaN for slots without a newcomer
// (entry_steps in head_split.h), plus per slot v_f(all) and v_f({}) into full/empty (NaN likewise).
void order_free(const sae::Sae& sae, const EvolutionRequest& request, int64_t q, const int32_t* lists, int64_t k,
                int64_t slots, int64_t orders, uint64_t seed, float* out, float* full, float* empty);

}  // namespace saetraj::sweep
