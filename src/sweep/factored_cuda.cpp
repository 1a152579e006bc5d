// The factored method's GPU path (derivation in factored.h), in LibTorch ops; runs on tensors of any device
// (NOTE in evolution.h). Per layer, one product projects every source's head outputs, residual, b_O and
// b_dec through W_enc. Per chunk of queries (the direct method's chunks), one batched product over sources
// gives sum_h A_h[q, j] Z_h[j] for every (query, source), a running sum along the sources turns it into
// S_j, and the pre-activation of each row is assembled from S_j, R_q, B and the row's scalars; the
// activation and top-k follow (topk_cuda.cpp). Only [rows, k] lists leave the device.
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "factored_common.h"
#include "saetraj/core/error.h"
#include "saetraj/core/timing.h"
#include "saetraj/sweep/decompose.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/factored.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/sweep/topk.h"

namespace saetraj::sweep {

namespace {

using factored_detail::Layout;
using factored_detail::Preprocessing;
using factored_detail::Scale;

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// The rows of queries [q0, q1), ordered by query then step: which query and source each row reads, and
// the NOTE's scalars: pre = resid * R_q + acc * S_j + bias * B + beta.
struct ChunkRows {
  torch::Tensor query;   // int64 [rows], q - q0
  torch::Tensor source;  // int64 [rows], j of step j+1 (0 for step 0, whose acc is 0)
  torch::Tensor resid, acc, bias;  // float32 [rows]
};

ChunkRows chunk_rows(const Preprocessing& pre, const EvolutionRequest& req, int64_t q0, int64_t q1,
                     const torch::TensorOptions& options) {
  const auto& parts = *req.parts;
  const bool norm = req.post_norm && req.post_norm->enabled;
  const bool has_bias = parts.bias.defined();
  std::vector<int64_t> query, source;
  std::vector<uint8_t> initial;
  std::vector<float> share;  // (j+1)/(q+1): the part of b_O added by step j+1
  for (int64_t q = q0; q < q1; ++q) {
    for (int64_t s = 0; s < steps_of_query(q); ++s) {
      query.push_back(q - q0);
      source.push_back(s == 0 ? 0 : s - 1);
      initial.push_back(s == 0);
      share.push_back(s == 0 || !has_bias ? 0.0f : static_cast<float>(s / (q + 1.0)));
    }
  }
  const auto rows = static_cast<int64_t>(query.size());
  const auto index_options = options.dtype(torch::kInt64);
  ChunkRows out;
  out.query = torch::tensor(query, torch::kInt64).to(index_options.device());
  out.source = torch::tensor(source, torch::kInt64).to(index_options.device());
  // Copies (clone) of the host vectors: on a CPU device .to() would alias memory freed on return.
  const auto step0 = torch::from_blob(initial.data(), {rows}, torch::kUInt8).clone().to(options.device()).to(torch::kBool);
  const auto bias_share = torch::from_blob(share.data(), {rows}, torch::kFloat32).clone().to(options);
  if (!norm && pre.scale == Scale::One) {  // no per-vector scalars: no residual-width work at all
    out.resid = torch::ones({rows}, options);
    out.acc = step0.logical_not().to(torch::kFloat32);
    out.bias = bias_share;
    return out;
  }
  // Partial sums c_j of every query of the chunk [Q, J, d], their norm scalar rho and the SAE's sigma.
  const int64_t width = q1;
  const auto c = source_contributions_block(parts, q0, q1).to(options).cumsum(1);
  const auto resid_q = req.resid_pre->slice(0, q0, q1).to(options);  // [Q, d]
  auto rho = torch::ones({q1 - q0, width}, options);
  if (norm) {
    rho = (c.to(torch::kFloat64).pow(2).mean(-1) + req.post_norm->eps).rsqrt().to(torch::kFloat32);
  }
  const auto g = norm ? req.post_norm->weight.to(options) : torch::ones({pre.d}, options);
  const auto x = resid_q.unsqueeze(1) + rho.unsqueeze(-1) * c * g;  // the encoded vectors, [Q, J, d]
  const auto sigma = pre.sigma_rows(x).reshape({-1});                 // [Q * J]
  const auto sigma0 = pre.sigma_rows(resid_q);                         // [Q]
  const auto flat = out.query * width + out.source;
  const auto step_sigma = sigma.index_select(0, flat);
  const auto step_acc = step_sigma * rho.reshape({-1}).index_select(0, flat);
  out.resid = torch::where(step0, sigma0.index_select(0, out.query), step_sigma);
  out.acc = step_acc.masked_fill(step0, 0.0f);
  out.bias = step_acc * bias_share;
  return out;
}

}  // namespace

void compute_evolution_factored_cuda(const sae::Sae& sae, const EvolutionRequest& req, int32_t* indices,
                                     float* values, PhaseTimes* times) {
  c10::InferenceMode guard;
  const auto& parts = *req.parts;
  const int64_t heads = parts.pattern.size(0), n = parts.pattern.size(1), d_sae = sae.cfg.d_sae;
  SAETRAJ_CHECK(1 <= req.q_begin && req.q_begin < req.q_end && req.q_end <= n, InputError, "query range [",
                req.q_begin, ", ", req.q_end, ") is outside [1, ", n, ")");
  SAETRAJ_CHECK(req.k > 0, InputError, "k must be positive, got ", req.k);
  const torch::Device device = req.resid_pre->device();
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const Layout layout{heads};
  const Preprocessing pre(sae.cfg);
  const int64_t keep = sae.cfg.activation == sae::Activation::TopK ? std::min(req.k, sae.cfg.topk_k) : req.k;
  PhaseTimes local;

  // The projections of every source of the prompt (all n, whatever queries this rank holds, so that the
  // product, and its rounding, is the same on every rank).
  auto t0 = std::chrono::steady_clock::now();
  const auto inputs = factored_detail::projection_inputs(sae, pre, req, layout, n);
  if (times) synchronize(device), local.decompose += seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  const auto z = sae.project(inputs);  // [rows(n), d_sae]
  auto beta = sae.b_enc.to(options);
  if (sae.cfg.apply_b_dec_to_input) beta = beta - z[Layout::kDec];
  const auto bias_row = z[Layout::kBias];
  const auto per_source = z.narrow(0, 2, n * (heads + 1)).view({n, heads + 1, d_sae});
  const auto head_z = per_source.narrow(1, 0, heads);   // [n, H, d_sae]
  const auto resid_z = per_source.select(1, heads);     // [n, d_sae]
  const auto threshold =
      sae.cfg.activation == sae::Activation::JumpReLU ? sae.threshold.to(options) : torch::Tensor();
  const auto pattern = parts.pattern.to(options);
  if (times) synchronize(device), local.encode += seconds_since(t0);

  int64_t written = 0;
  for (const auto& [q0, q1] : evolution_chunks(req.q_begin, req.q_end, req.chunk_rows)) {
    const int64_t queries = q1 - q0, sources = q1;
    t0 = std::chrono::steady_clock::now();
    const ChunkRows rows = chunk_rows(pre, req, q0, q1, options);
    if (times) synchronize(device), local.decompose += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    // sum_h A_h[q, j] Z_h[j] for every source j and query q: [J, Q, H] x [J, H, d_sae] -> [J, Q, d_sae],
    // then the running sum over sources.
    const auto weights = pattern.slice(1, q0, q1).slice(2, 0, sources).permute({2, 1, 0}).contiguous();
    auto s = torch::bmm(weights, head_z.narrow(0, 0, sources));
    s.cumsum_(0);
    auto v = s.view({sources * queries, d_sae}).index_select(0, rows.source * queries + rows.query);
    s = torch::Tensor();
    v.mul_(rows.acc.unsqueeze(1));
    v.addcmul_(resid_z.narrow(0, q0, queries).index_select(0, rows.query), rows.resid.unsqueeze(1));
    v.addcmul_(rows.bias.unsqueeze(1), bias_row.unsqueeze(0));
    v.add_(beta);
    if (times) synchronize(device), local.encode += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    const auto lists = topk_active_tensors(v, threshold, keep, req.k);
    if (!lists.finite) {
      throw_non_finite(q0, q1 - 1);
    }
    copy_lists_to_host(lists, indices + written * req.k, values + written * req.k);
    local.topk += seconds_since(t0);
    written += rows_of_prompt(q1) - rows_of_prompt(q0);
  }
  if (times) {
    times->decompose += local.decompose;
    times->encode += local.encode;
    times->topk += local.topk;
  }
}

}  // namespace saetraj::sweep
