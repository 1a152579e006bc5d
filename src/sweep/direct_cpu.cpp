// The direct method's CPU kernels: partial sums built in the residual space and encoded in chunks of
// rows, one matrix product per chunk, with the activation fused into the top-k scan (topk_cpu.cpp).
#include <algorithm>
#include <chrono>

#include "saetraj/core/error.h"
#include "saetraj/core/timing.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/sweep/topk.h"

namespace saetraj::sweep {

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
  if (!buffer.defined() || !buffer.device().is_cpu() || buffer.numel() < buffer_rows * sae.cfg.d_sae) {
    buffer = torch::empty({buffer_rows * sae.cfg.d_sae}, torch::dtype(torch::kFloat32));
  }
  int64_t written = 0;
  for (const auto& [q0, q1] : evolution_chunks(request.q_begin, request.q_end, request.chunk_rows)) {
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
      throw_non_finite(q0, q1 - 1);
    }
    written += rows;
  }
  if (times) {
    times->decompose += local.decompose;
    times->encode += local.encode;
    times->topk += local.topk;
  }
}

}  // namespace saetraj::sweep
