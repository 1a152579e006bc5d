// The MLP decomposition (issue 15 part 3): what the method does for attention, done for a layer's MLP with a
// transcoder of it, at one position (the sweep's last position).
//
// [NOTE] The MLP decomposition. With m the MLP's input at the position (the normalised resid_mid the
// transcoder reads) and y = resid_post - resid_mid the MLP's output as it joins the residual (for Gemma after
// the post-feedforward norm: hook_mlp_out, the very vector the Gemma Scope transcoders predict),
//    y = sum_{f active} act_f(m) W_dec[f]  +  b_dec  +  W_skip m  +  e,
// where e = y - transcoder(m) is the transcoder's reconstruction error. The terms are added to resid_mid one at a
// time, in this order:
//    1. the active features' contributions act_f W_dec[f], largest norm first (ties by lower feature index);
//    2. the decoder bias b_dec;
//    3. the skip term W_skip m (only for transcoders that have one);
//    4. the reconstruction error e.
// x_0 = resid_mid and x_{t+1} = x_t + term_t, so the last vector is resid_mid + y = resid_post exactly (up to
// rounding). No norm is applied to the partial sums: for Gemma the transcoder's output space is already the
// post-feedforward-normed one (SAE-Lens's hooks for Gemma Scope 1 and 2 transcoders: hook_mlp_out =
// post_feedforward_layernorm's output), so its terms add linearly, whereas the attention path's contributions
// live before Gemma's post-attention norm and must pass through it (decompose.h). Applying that norm again to
// partial sums of already-normed terms would count it twice. Terms are computed in float64 from the float32
// activations (the transcoder decides which features are active in float32, as SAE-Lens does).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "saetraj/sae/sae.h"
#include "saetraj/sae/transcoder.h"

namespace saetraj::sweep {

enum class MlpTermKind { Feature, Bias, Skip, Error };
const char* mlp_term_name(MlpTermKind kind);  // "feature", "bias", "skip", "error"

struct MlpDecomposition {
  torch::Tensor terms;               // [T, d_model] float64, in the order they are added
  std::vector<MlpTermKind> kind;     // per term
  std::vector<int64_t> feature;      // per term: the transcoder feature, -1 for bias, skip and error
  std::vector<double> activation;    // per term: act_f for a feature, 0 otherwise
};

// `mlp_in` [d_in] (the transcoder's input), `mlp_out` [d_model] (resid_post - resid_mid). Throws InputError when
// the sizes do not match the transcoder's d_in and d_out.
MlpDecomposition decompose_mlp(const sae::Transcoder& transcoder, const torch::Tensor& mlp_in,
                               const torch::Tensor& mlp_out);

// The vectors encoded: x_0 = resid_mid, x_{t+1} = resid_mid + term_0 + ... + term_t.  [T+1, d_model] float32.
torch::Tensor mlp_evolution_inputs(const torch::Tensor& resid_mid, const MlpDecomposition& d);

// Each step's top-k active features of the residual SAE (SPEC 1.2's lists): rows x k indices (-1 = empty) and
// values for the T+1 rows of mlp_evolution_inputs.
void mlp_evolution_lists(const sae::Sae& sae, const torch::Tensor& resid_mid, const MlpDecomposition& d, int64_t k,
                         int32_t* indices, float* values);

// The trajectories of the MLP steps, as SPEC 3 defines them for attention: each feature in the last row's top-k
// (slot order) that is absent from row 0, with its first appearance s >= 1 and the term added at that step
// (step s adds term s-1), so that the newcomer is attributed to a transcoder feature, or to bias, skip or error.
struct MlpNewcomer {
  int32_t feature = -1;  // residual SAE feature
  int64_t slot = 0;      // its slot in the last row (final position - 1)
  int64_t step = 0;      // first appearance, 1..T
  int64_t term = 0;      // step - 1
};
std::vector<MlpNewcomer> mlp_newcomers(const int32_t* indices, int64_t steps, int64_t k);

}  // namespace saetraj::sweep
