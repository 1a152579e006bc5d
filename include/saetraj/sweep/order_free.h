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
// shapes fixed by (q, M, d) only, so the results are identical for any rank count.
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

// Feature f's activation (the NOTE's v_f) for partial sums `sums` [m, d] (float64) of query q: [m, F] for
// the features `features` (int64 [F]).
torch::Tensor coalition_activations(const sae::Sae& sae, const EvolutionRequest& request, int64_t q,
                                    const torch::Tensor& sums, const torch::Tensor& features);

// For query q: writes slots x (q+1) x kOrderColumns floats into `out`, NaN for slots without a newcomer
// (entry_steps in head_split.h), plus per slot v_f(all) and v_f({}) into full/empty (NaN likewise).
void order_free(const sae::Sae& sae, const EvolutionRequest& request, int64_t q, const int32_t* lists, int64_t k,
                int64_t slots, int64_t orders, uint64_t seed, float* out, float* full, float* empty);

}  // namespace saetraj::sweep
