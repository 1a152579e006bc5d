#include "saetraj/sweep/evolution.h"

#include <chrono>

#include "saetraj/core/error.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/sweep/topk.h"

namespace saetraj::sweep {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void compute_evolution(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices, float* values,
                       PhaseTimes* times) {
  c10::InferenceMode guard;
  PhaseTimes local;
  int64_t written = 0;
  for (int64_t q0 = request.q_begin; q0 < request.q_end;) {
    // Take whole queries until the chunk is full (at least one query per chunk).
    int64_t q1 = q0 + 1;
    while (q1 < request.q_end && rows_of_prompt(q1 + 1) - rows_of_prompt(q0) <= request.chunk_rows) ++q1;
    const int64_t rows = rows_of_prompt(q1) - rows_of_prompt(q0);

    auto t0 = std::chrono::steady_clock::now();
    const auto inputs = evolution_inputs(*request.resid_pre, *request.parts, request.post_attention, q0, q1);
    local.decompose += seconds_since(t0);

    // ReLU and JumpReLU (with b_enc) are applied inside the top-k scan, so the [rows, d_sae] product is the
    // only full-width pass besides the scan; TopK needs its row-wise ranking first.
    t0 = std::chrono::steady_clock::now();
    const auto preprocessed = sae.preprocess(inputs);
    const bool fused = sae.cfg.activation != sae::Activation::TopK;
    auto product = fused ? torch::mm(preprocessed, sae.w_enc) : sae.pre_activations(preprocessed);
    local.encode += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    int32_t* out_i = indices + written * request.k;
    float* out_v = values + written * request.k;
    bool finite;
    if (!fused) {
      finite = torch::isfinite(product).all().item<bool>();
      topk_active(sae.activate(std::move(product)), request.k, out_i, out_v);
    } else {
      const bool jump = sae.cfg.activation == sae::Activation::JumpReLU;
      const torch::Tensor bias = sae.b_enc.to(torch::kFloat32).contiguous();
      const torch::Tensor threshold = jump ? sae.threshold.to(torch::kFloat32).contiguous() : torch::Tensor();
      finite = topk_active_fused(product, bias.data_ptr<float>(), jump ? threshold.data_ptr<float>() : nullptr,
                                 request.k, out_i, out_v);
    }
    local.topk += seconds_since(t0);
    if (!finite) {
      throw NumericError(str("SAE pre-activations contain NaN or Inf for queries ", q0, "..", q1 - 1,
                             " (check the model and SAE weights, and the residual stream, for non-finite values)"));
    }
    written += rows;
    q0 = q1;
  }
  if (times) {
    times->decompose += local.decompose;
    times->encode += local.encode;
    times->topk += local.topk;
  }
}

}  // namespace saetraj::sweep
