#include "saetraj/sweep/evolution.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "saetraj/core/error.h"
#include "saetraj/core/timing.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/sweep/topk.h"

namespace saetraj::sweep {

void PhaseTimes::to_array(double* out) const {
  const double values[kCount] = {startup, forward, exchange, decompose, encode, topk, write, other};
  std::copy(values, values + kCount, out);
}

PhaseTimes PhaseTimes::from_array(const double* in) {
  return PhaseTimes{in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7]};
}

std::string PhaseTimes::describe() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "start-up %.2f s, forward %.2f s, exchange %.2f s, decomposition %.2f s, encoding %.2f s, "
                "top-k %.2f s, HDF5 writes and waits %.2f s, other %.2f s",
                startup, forward, exchange, decompose, encode, topk, write, other);
  return buf;
}

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
  // Every activation is fused into the top-k scan: ReLU and JumpReLU (with b_enc) through the activity
  // test, TopK by keeping at most its own k per row. The [rows, d_sae] product is therefore the only
  // full-width array, and one buffer serves every chunk.
  const bool jump = sae.cfg.activation == sae::Activation::JumpReLU;
  const int64_t keep = sae.cfg.activation == sae::Activation::TopK ? std::min(request.k, sae.cfg.topk_k) : request.k;
  const torch::Tensor bias = sae.b_enc.to(torch::kFloat32).contiguous();
  const torch::Tensor threshold = jump ? sae.threshold.to(torch::kFloat32).contiguous() : torch::Tensor();
  // The largest chunk: chunk_rows, or one query's rows when a single query is longer.
  const int64_t total_rows = rows_of_prompt(request.q_end) - rows_of_prompt(request.q_begin);
  const int64_t last_query_rows = rows_of_prompt(request.q_end) - rows_of_prompt(request.q_end - 1);
  const int64_t buffer_rows = std::min(total_rows, std::max(request.chunk_rows, last_query_rows));
  torch::Tensor local_buffer;
  torch::Tensor& buffer = request.workspace ? *request.workspace : local_buffer;
  if (!buffer.defined() || buffer.numel() < buffer_rows * sae.cfg.d_sae) {
    buffer = torch::empty({buffer_rows * sae.cfg.d_sae}, torch::dtype(torch::kFloat32));
  }
  int64_t written = 0;
  for (int64_t q0 = request.q_begin; q0 < request.q_end;) {
    // Take whole queries until the chunk is full (at least one query per chunk).
    int64_t q1 = q0 + 1;
    while (q1 < request.q_end && rows_of_prompt(q1 + 1) - rows_of_prompt(q0) <= request.chunk_rows) ++q1;
    const int64_t rows = rows_of_prompt(q1) - rows_of_prompt(q0);

    auto t0 = std::chrono::steady_clock::now();
    const auto inputs = evolution_inputs(*request.resid_pre, *request.parts, post_attention, q0, q1);
    local.decompose += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    const auto preprocessed = sae.preprocess(inputs);
    auto product = buffer.narrow(0, 0, rows * sae.cfg.d_sae).view({rows, sae.cfg.d_sae});
    sae.project_into(preprocessed, product);
    local.encode += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    const bool finite = topk_active_fused(product, bias.data_ptr<float>(), jump ? threshold.data_ptr<float>() : nullptr,
                                          keep, request.k, indices + written * request.k,
                                          values + written * request.k);
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
