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

void check_finite(const torch::Tensor& t, const char* what, int64_t q_begin, int64_t q_end) {
  if (!torch::isfinite(t).all().item<bool>()) {
    throw NumericError(str(what, " contains NaN or Inf for queries ", q_begin, "..", q_end - 1,
                           " (check the model and SAE weights for non-finite values)"));
  }
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
    check_finite(inputs, "the residual stream or attention output", q0, q1);
    local.decompose += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    const auto acts = sae.encode(inputs);
    local.encode += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    topk_active(acts, request.k, indices + written * request.k, values + written * request.k);
    local.topk += seconds_since(t0);
    const float* top_values = values + written * request.k;
    for (int64_t i = 0; i < rows * request.k; ++i) {
      if (!std::isfinite(top_values[i])) {
        throw NumericError(str("SAE activations contain NaN or Inf for queries ", q0, "..", q1 - 1));
      }
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
