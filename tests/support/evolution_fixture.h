// Random evolution fixtures shared by the tests of the two methods and their two devices, and by the GPU
// check (tests/gpu, which has no GoogleTest): attention parts, a post-attention norm and an SAE of every
// kind the sweep supports, the tables they give, and the count of differences between two tables that are
// not ties within float rounding.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/sweep/topk.h"

namespace saetraj::testing {

struct Case {
  std::string name;
  sae::Activation activation = sae::Activation::ReLU;
  sae::Normalization normalization = sae::Normalization::None;
  bool centre = false;
  bool b_dec = true;
  bool b_o = false;
  bool post_norm = false;
  // JumpReLU thresholds partly below zero, as a gated SAE folded into JumpReLU has them (sae.h, [NOTE] Folding
  // at load): there the ReLU alone decides.
  bool negative_thresholds = false;
};

struct Fixture {
  torch::Tensor resid;
  sweep::AttentionParts parts;
  model::PostAttentionNorm norm;
  sae::Sae sae;
};

inline Fixture make_fixture(const Case& c, int64_t heads, int64_t n, int64_t d, int64_t d_sae, uint64_t seed) {
  torch::manual_seed(seed);
  Fixture f;
  f.resid = torch::randn({n, d}) + 0.5;
  auto scores = torch::randn({heads, n, n}) * 2.0;
  scores.masked_fill_(torch::ones({n, n}, torch::kBool).triu(1), -std::numeric_limits<float>::infinity());
  f.parts.pattern = torch::softmax(scores, -1);
  f.parts.head_out = torch::randn({heads, n, d}) * 0.8;
  if (c.b_o) f.parts.bias = torch::randn({d}) * 0.3;
  f.norm.enabled = c.post_norm;
  f.norm.weight = 1.0 + 0.3 * torch::randn({d});
  f.norm.eps = 1e-6;
  auto& s = f.sae;
  s.cfg.d_in = d;
  s.cfg.d_sae = d_sae;
  s.cfg.activation = c.activation;
  s.cfg.topk_k = 7;
  s.cfg.normalization = c.normalization;
  s.cfg.center_residual = c.centre;
  s.cfg.apply_b_dec_to_input = c.b_dec;
  s.w_enc = torch::randn({d, d_sae}) / std::sqrt(static_cast<double>(d));
  s.b_enc = torch::randn({d_sae}) * 0.2 - 0.4;
  s.b_dec = torch::randn({d}) * 0.2;
  if (c.activation == sae::Activation::JumpReLU) s.threshold = torch::rand({d_sae}) * 0.5 - (c.negative_thresholds ? 0.3 : 0.0);
  return f;
}

struct Table {
  std::vector<int32_t> idx;
  std::vector<float> val;
};

// Every activation, preprocessing and post-attention norm the sweep supports.
inline const std::vector<Case>& every_case() {
  static const std::vector<Case> cases = {
      {"relu", sae::Activation::ReLU},
      {"relu+b_O", sae::Activation::ReLU, sae::Normalization::None, false, true, true},
      {"jumprelu+postnorm", sae::Activation::JumpReLU, sae::Normalization::None, false, false, false, true},
      {"jumprelu+postnorm+b_O", sae::Activation::JumpReLU, sae::Normalization::None, false, true, true, true},
      {"topk", sae::Activation::TopK, sae::Normalization::None, false, true, true},
      {"centred", sae::Activation::ReLU, sae::Normalization::None, true, true, true},
      {"layer_norm", sae::Activation::ReLU, sae::Normalization::LayerNorm, false, true, true},
      {"layer_norm+postnorm", sae::Activation::ReLU, sae::Normalization::LayerNorm, true, true, true, true},
      {"constant_norm_rescale", sae::Activation::ReLU, sae::Normalization::ConstantNormRescale, false, true, true},
      {"constant_norm_rescale+centred+postnorm", sae::Activation::JumpReLU,
       sae::Normalization::ConstantNormRescale, true, true, true, true},
      {"expected_average_only_in", sae::Activation::ReLU, sae::Normalization::ExpectedAverageOnlyIn},
      {"jumprelu+negative thresholds (gated)", sae::Activation::JumpReLU, sae::Normalization::None, false, true, true,
       true, true},
  };
  return cases;
}

// The same fixture on another device (tensors and SAE moved).
inline Fixture to_device(const Fixture& f, const torch::Device& device) {
  Fixture g = f;
  g.resid = f.resid.to(device);
  g.parts.pattern = f.parts.pattern.to(device);
  g.parts.head_out = f.parts.head_out.to(device);
  if (f.parts.bias.defined()) g.parts.bias = f.parts.bias.to(device);
  g.norm.weight = f.norm.weight.to(device);
  g.sae.to(device);
  return g;
}

// Which implementation computes the tables: the dispatch of compute_evolution (the CPU kernels for CPU
// tensors, the GPU path for CUDA ones), or the GPU path's LibTorch ops whatever the device.
enum class Path { Dispatch, GpuOps };

inline Table run(const Fixture& f, sweep::Method method, int64_t q_begin, int64_t q_end, int64_t k, int64_t chunk_rows,
                 Path path = Path::Dispatch) {
  sweep::EvolutionRequest req;
  req.resid_pre = &f.resid;
  req.parts = &f.parts;
  req.post_norm = &f.norm;
  req.q_begin = q_begin;
  req.q_end = q_end;
  req.k = k;
  req.chunk_rows = chunk_rows;
  req.method = method;
  req.device = f.resid.device();
  const int64_t rows = sweep::rows_of_prompt(q_end) - sweep::rows_of_prompt(q_begin);
  Table t{std::vector<int32_t>(rows * k), std::vector<float>(rows * k)};
  if (path == Path::Dispatch) {
    sweep::compute_evolution(f.sae, req, t.idx.data(), t.val.data());
  } else if (method == sweep::Method::Factored) {
    sweep::compute_evolution_factored_cuda(f.sae, req, t.idx.data(), t.val.data(), nullptr);
  } else {
    sweep::compute_evolution_direct_cuda(f.sae, req, t.idx.data(), t.val.data(), nullptr);
  }
  return t;
}

// Entries of `a` and `b` that differ by more than a tie closer than float rounding can explain: a value
// apart by more than the tolerance, or another feature where no neighbour (nor the activation edge) is
// within it. Both tables hold rows of k entries.
inline int64_t unexplained_differences(const Table& a, const Table& b, int64_t k) {
  int64_t bad = 0;
  for (size_t at = 0; at < a.idx.size(); ++at) {
    const int64_t i = static_cast<int64_t>(at) % k;
    const float va = a.val[at], vb = b.val[at];
    const float tol = 2e-4f * (1.0f + std::fabs(va));
    if (std::fabs(va - vb) > tol) {
      ++bad;
      continue;
    }
    if (a.idx[at] == b.idx[at]) continue;
    const bool near_prev = i > 0 && std::fabs(a.val[at - 1] - va) < tol;
    const bool near_next = i + 1 < k && std::fabs(a.val[at + 1] - va) < tol;
    const bool near_edge = std::fabs(va) < tol || std::fabs(vb) < tol;  // entering or leaving the list
    bad += !(near_prev || near_next || near_edge);
  }
  return bad;
}

}  // namespace saetraj::testing
