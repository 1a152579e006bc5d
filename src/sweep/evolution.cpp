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

void throw_non_finite(int64_t q_first, int64_t q_last, int64_t first_bad) {
  throw NumericError(str("SAE pre-activations contain NaN or Inf for queries ", q_first, "..", q_last,
                         first_bad >= 0 ? str(" (first at query ", first_bad, ")") : std::string(),
                         "; check the model and SAE weights, and the residual stream, for non-finite values"));
}

std::vector<std::pair<int64_t, int64_t>> evolution_chunks(int64_t q_begin, int64_t q_end, int64_t chunk_rows) {
  std::vector<std::pair<int64_t, int64_t>> chunks;
  for (int64_t q0 = q_begin; q0 < q_end;) {
    int64_t q1 = q0 + 1;
    while (q1 < q_end && rows_of_prompt(q1 + 1) - rows_of_prompt(q0) <= chunk_rows) ++q1;
    chunks.emplace_back(q0, q1);
    q0 = q1;
  }
  return chunks;
}

void compute_evolution(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices, float* values,
                       PhaseTimes* times) {
  Method method = request.method;
  if (method == Method::Auto) {
    method = choose_method(request.parts->pattern.size(1), request.parts->pattern.size(0), sae.cfg.d_in,
                           sae.cfg.d_sae);
  }
  // The CPU kernels, or the GPU path (LibTorch ops) for tensors on a CUDA device.
  const bool gpu = request.device.is_cuda();
  if (method == Method::Factored) {
    (gpu ? compute_evolution_factored_cuda : compute_evolution_factored)(sae, request, indices, values, times);
  } else {
    (gpu ? compute_evolution_direct_cuda : compute_evolution_direct)(sae, request, indices, values, times);
  }
}

}  // namespace saetraj::sweep
