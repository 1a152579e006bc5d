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

const char* method_name(Method m) {
  switch (m) {
    case Method::Auto: return "auto";
    case Method::Direct: return "direct";
    case Method::Factored: return "factored";
  }
  return "?";
}

Method parse_method(const std::string& name) {
  for (Method m : {Method::Auto, Method::Direct, Method::Factored}) {
    if (name == method_name(m)) return m;
  }
  throw InputError(str("unknown method '", name, "' (expected auto, direct or factored)"));
}

Method choose_method(int64_t n_tokens, int64_t heads, int64_t d_model, int64_t d_sae) {
  const double rows = static_cast<double>(rows_of_prompt(n_tokens));
  const double d = static_cast<double>(d_model), width = static_cast<double>(d_sae);
  const double direct = rows * d * width;
  const double factored = ((heads + 1.0) * n_tokens + 2.0) * d * width + rows * heads * width * kAssemblyCost;
  return factored < direct ? Method::Factored : Method::Direct;
}

void compute_evolution(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices, float* values,
                       PhaseTimes* times) {
  Method method = request.method;
  if (method == Method::Auto) {
    method = choose_method(request.parts->pattern.size(1), request.parts->pattern.size(0), sae.cfg.d_in,
                           sae.cfg.d_sae);
  }
  if (method == Method::Factored) {
    compute_evolution_factored(sae, request, indices, values, times);
  } else {
    compute_evolution_direct(sae, request, indices, values, times);
  }
}

void compute_evolution_direct(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices,
                              float* values, PhaseTimes* times) {
  c10::InferenceMode guard;
  const model::PostAttentionNorm* norm = request.post_norm;
  const PostAttention post_attention = [norm](const torch::Tensor& x) { return norm ? norm->apply(x) : x; };
  PhaseTimes local;
  int64_t written = 0;
  for (int64_t q0 = request.q_begin; q0 < request.q_end;) {
    // Take whole queries until the chunk is full (at least one query per chunk).
    int64_t q1 = q0 + 1;
    while (q1 < request.q_end && rows_of_prompt(q1 + 1) - rows_of_prompt(q0) <= request.chunk_rows) ++q1;
    const int64_t rows = rows_of_prompt(q1) - rows_of_prompt(q0);

    auto t0 = std::chrono::steady_clock::now();
    const auto inputs = evolution_inputs(*request.resid_pre, *request.parts, post_attention, q0, q1);
    local.decompose += seconds_since(t0);

    // ReLU and JumpReLU (with b_enc) are applied inside the top-k scan, so the [rows, d_sae] product is the
    // only full-width pass besides the scan; TopK needs its row-wise ranking first.
    t0 = std::chrono::steady_clock::now();
    const auto preprocessed = sae.preprocess(inputs);
    const bool fused = sae.cfg.activation != sae::Activation::TopK;
    auto product = fused ? sae.project(preprocessed) : sae.pre_activations(preprocessed);
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
