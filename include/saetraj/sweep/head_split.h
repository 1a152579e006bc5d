// Which attention head brought a feature in (issue 15, part 1): for each trajectory slot of a query, the
// feature's pre-activation jump at its entry step split exactly into one signed part per (query) head, the
// part of the output bias b_O, and what the normalisations leave unassigned.
//
// [NOTE] The head split. Feature f enters the top-k of query q at step s = j+1 (source token j added). Its
// pre-activation jump is pre_f(x_{j+1}) - pre_f(x_j), with x_{j+1} = r + phi(c_j) and
// c_j = c_{j-1} + sum_h A_h[q,j] u_h[j] + b_O/(q+1) (u_h[j] = v_h[j] W_O[h]). As in the factored method
// (NOTE in factored.h), pre_f(x) = sigma(x) (Pi x) . W_enc[:,f] + beta_f and phi(c) = rho(c) (c . g), so
//    jump = sum_h  sigma_{j+1} rho_j A_h[q,j] (Pi (u_h[j] . g)) . W_enc[:,f]      (head h's part)
//         +        sigma_{j+1} rho_j (Pi (b_O . g)) . W_enc[:,f] / (q+1)            (the bias part)
//         + unassigned,
// where sigma_{j+1} is the SAE's normalisation scalar of x_{j+1} and rho_j the post-attention RMSNorm's
// scalar of c_j. Each head's part is its contribution as the new step scales it; `unassigned` is what the
// change of those scalars does to everything added before (the residual and tokens 0..j-1). Without any
// normalisation (sigma = rho = 1) it is zero up to rounding and the split is the jump's exact linear
// decomposition. Grouped-query models: one part per query head (each uses its key/value group's v).
// Everything is computed in float64 with LibTorch ops on the request's device, query by query with shapes
// fixed by the query alone, so the values do not depend on how ranks split the queries.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "saetraj/sae/sae.h"
#include "saetraj/sweep/evolution.h"

namespace saetraj::sweep {

// Columns of one slot's split: jump, bias part, unassigned, then one per head.
inline constexpr int64_t kSplitJump = 0, kSplitBias = 1, kSplitUnassigned = 2, kSplitHeads = 3;
inline int64_t split_columns(int64_t heads) { return kSplitHeads + heads; }

// For each of the first `slots` slots of the last step of query q (`lists`: its q+2 rows of k indices,
// -1 = empty), the step at which that slot's feature first appears, or -1 when the slot is empty or its
// feature is in step 0 (not a newcomer). Agrees with graph::find_trajectories.
std::vector<int64_t> entry_steps(const int32_t* lists, int64_t q, int64_t k, int64_t slots);

// Writes slots x split_columns(H) floats into `out` for query q (request.q_begin <= q < request.q_end is not
// required; only resid_pre, parts and post_norm are read): the split of each newcomer slot, NaN rows for the
// other slots.
void head_split(const sae::Sae& sae, const EvolutionRequest& request, int64_t q, const int32_t* lists, int64_t k,
                int64_t slots, float* out);

}  // namespace saetraj::sweep
