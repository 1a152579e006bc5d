// The direct method's GPU path: the same chunks as the CPU kernels (evolution_chunks), each encoded by one
// product into a device buffer, b_enc added, the activation and top-k in LibTorch ops (topk_cuda.cpp); only
// the [rows, k] lists are copied to the host. Runs on tensors of any device (NOTE in evolution.h).
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>

#include "saetraj/core/error.h"
#include "saetraj/core/timing.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/sweep/topk.h"

namespace saetraj::sweep {

namespace {

// Phase times of asynchronous devices mean something only after the queued work has run.
void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace

void compute_evolution_direct_cuda(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices,
                                   float* values, PhaseTimes* times) {
  c10::InferenceMode guard;
  const torch::Device device = request.resid_pre->device();
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const model::PostAttentionNorm* norm = request.post_norm;
  const PostAttention post_attention = [norm](const torch::Tensor& x) { return norm ? norm->apply(x) : x; };
  const int64_t keep =
      sae.cfg.activation == sae::Activation::TopK ? std::min(request.k, sae.cfg.topk_k) : request.k;
  const torch::Tensor bias = sae.b_enc.to(options);
  const torch::Tensor threshold =
      sae.cfg.activation == sae::Activation::JumpReLU ? sae.threshold.to(options) : torch::Tensor();
  const auto chunks = evolution_chunks(request.q_begin, request.q_end, request.chunk_rows);
  int64_t buffer_rows = 0;
  for (const auto& [q0, q1] : chunks) buffer_rows = std::max(buffer_rows, rows_of_prompt(q1) - rows_of_prompt(q0));
  torch::Tensor local_buffer;
  torch::Tensor& buffer = request.workspace ? *request.workspace : local_buffer;
  if (!buffer.defined() || buffer.device() != device || buffer.numel() < buffer_rows * sae.cfg.d_sae) {
    buffer = torch::Tensor();  // give the old one back before the new one is allocated
    buffer = torch::empty({buffer_rows * sae.cfg.d_sae}, options);
  }
  PhaseTimes local;
  int64_t written = 0;
  for (const auto& [q0, q1] : chunks) {
    const int64_t rows = rows_of_prompt(q1) - rows_of_prompt(q0);
    auto t0 = std::chrono::steady_clock::now();
    const auto inputs = evolution_inputs(*request.resid_pre, *request.parts, post_attention, q0, q1);
    if (times) synchronize(device), local.decompose += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    auto product = buffer.narrow(0, 0, rows * sae.cfg.d_sae).view({rows, sae.cfg.d_sae});
    sae.project_into(sae.preprocess(inputs), product);
    product.add_(bias);
    if (times) synchronize(device), local.encode += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    const auto lists = topk_active_tensors(product, threshold, keep, request.k);
    if (!lists.finite) {
      throw_non_finite(q0, q1 - 1);
    }
    copy_lists_to_host(lists, indices + written * request.k, values + written * request.k);
    local.topk += seconds_since(t0);
    written += rows;
  }
  if (times) {
    times->decompose += local.decompose;
    times->encode += local.encode;
    times->topk += local.topk;
  }
}

}  // namespace saetraj::sweep
