// The evolution tables of one layer for one prompt: every step of every query encoded by the layer's
// SAE and reduced to top-k active features, by one of two exact methods:
//  - direct: the partial sums are built in the residual space and encoded in large row chunks (one
//    matrix product of d_model x d_sae per row);
//  - factored: the pre-activations of all partial sums are assembled from per-(source token, head)
//    projections through W_enc, computed once per layer (see factored.h for the derivation).
// Both give the same top-k lists up to float rounding; `Method::Auto` picks the cheaper by a cost model.
//
// [NOTE] Devices. Each method has two implementations of the same behaviour: CPU kernels (direct_cpu.cpp,
// factored_cpu.cpp, topk_cpu.cpp: fused scans, multi-threaded) and the GPU path (direct_cuda.cpp,
// factored_cuda.cpp, topk_cuda.cpp), written in LibTorch ops only: products, a batched product and a
// running sum over sources, and torch::topk with the ranking rule of topk.h applied exactly. The request's
// device picks one (compute_evolution); the GPU path also runs on CPU tensors, which is how CI, without a
// GPU, compares it with the CPU kernels for every SAE kind and both methods (test_device_paths). Only the
// [rows, k] top-k lists leave the device, never a [rows, d_sae] matrix.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "saetraj/model/model.h"
#include "saetraj/sae/sae.h"
#include "saetraj/sweep/decompose.h"

namespace saetraj::sweep {

// Seconds spent in each phase, summed over calls. The factored method's projections through W_enc count
// as encoding and its assembly of pre-activations as top-k selection (they are one fused pass).
// The sweep adds the phases around them: start-up (options, tokenizer, file, loading), the forward pass,
// the activation exchange, the HDF5 writes (which include waiting for the other ranks at the collective
// calls) and everything else in the prompt loop.
struct PhaseTimes {
  double startup = 0.0;
  double forward = 0.0;
  double exchange = 0.0;
  double decompose = 0.0;
  double encode = 0.0;
  double topk = 0.0;
  double write = 0.0;
  double other = 0.0;

  static constexpr int kCount = 8;
  void to_array(double* out) const;  // kCount values, in declaration order
  static PhaseTimes from_array(const double* in);
  // The phases inside the prompt loop, `other` excluded.
  double measured_loop() const { return forward + exchange + decompose + encode + topk + write; }
  // "start-up 0.61 s, forward ...": one line for a rank's summary.
  std::string describe() const;
};

enum class Method { Auto, Direct, Factored };
const char* method_name(Method m);
Method parse_method(const std::string& name);  // "auto" | "direct" | "factored"; InputError otherwise

struct EvolutionRequest {
  const torch::Tensor* resid_pre = nullptr;  // [N, d]
  const AttentionParts* parts = nullptr;
  const model::PostAttentionNorm* post_norm = nullptr;  // nullptr or disabled: identity
  int64_t q_begin = 1;  // queries [q_begin, q_end)
  int64_t q_end = 1;
  int64_t k = 400;
  int64_t chunk_rows = 2048;  // direct: rows per matrix product; factored: bounds its projections likewise
  Method method = Method::Auto;
  // Optional: the direct method's [rows, d_sae] product buffer, kept by the caller across calls (layers and
  // prompts) so that each call reuses its pages instead of faulting in fresh ones; grown when too small.
  torch::Tensor* workspace = nullptr;
  // Where the tensors above (and the SAE's) live, and so where the work runs: the CPU kernels for kCPU,
  // the GPU path for a CUDA device.
  torch::Device device = torch::kCPU;
};

// [NOTE] The cost model behind Method::Auto. Counting multiply-adds of a prompt of N tokens, with
// rows(N) = (N-1)(N+4)/2, H heads, d = d_model, D = d_sae:
//   direct   = rows(N) d D                       (all at the matrix-product rate)
//   factored = ((H+1) N + 2) d D                 (projections, at the matrix-product rate)
//            + rows(N) H D * kAssemblyCost       (assembly, memory-bound: kAssemblyCost matrix-product
//                                                 multiply-adds per assembly multiply-add)
// kAssemblyCost was measured with `saetraj bench` (the "assembly cost" line) on the 2-core development
// machine with 2 threads: 19-23 with Debian's LibTorch 1.13 and OpenBLAS, 32.8-33.7 with the torch 2.14.1
// wheel, whose MKL products run 1.5-1.8x faster while the memory-bound assembly does not. On GPUs the
// factored path's assembly is a batched product and a running sum, much cheaper than this.
// The choice depends on the prompt length and the shapes only, never on a rank's share of the queries, so
// every rank count picks the same method and writes the same file.
inline constexpr double kAssemblyCost = 33.0;
Method choose_method(int64_t n_tokens, int64_t heads, int64_t d_model, int64_t d_sae);

// Writes rows_of_prompt(q_end) - rows_of_prompt(q_begin) rows of k entries into indices/values.
// Throws NumericError naming the queries when an SAE input or activation is not finite.
void compute_evolution(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices, float* values,
                       PhaseTimes* times = nullptr);

// The two methods, for tests and the benchmark (compute_evolution dispatches to them).
void compute_evolution_direct(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices,
                              float* values, PhaseTimes* times);
void compute_evolution_factored(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices,
                                float* values, PhaseTimes* times);
// The GPU path of each method (LibTorch ops; runs on the request's tensors whatever their device, so tests
// run it on CPU tensors). Query chunks are those of the direct method (chunk_rows), fixed by the prompt
// alone, so a row's operations never depend on how ranks split the queries.
void compute_evolution_direct_cuda(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices,
                                   float* values, PhaseTimes* times);
void compute_evolution_factored_cuda(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices,
                                     float* values, PhaseTimes* times);

// The NumericError every implementation throws when a pre-activation of queries q_first..q_last is NaN or
// Inf (first_bad: the first such query, when known).
[[noreturn]] void throw_non_finite(int64_t q_first, int64_t q_last, int64_t first_bad = -1);

// The direct method's chunks of queries [q_begin, q_end): whole queries until chunk_rows is reached (at
// least one query per chunk).
std::vector<std::pair<int64_t, int64_t>> evolution_chunks(int64_t q_begin, int64_t q_end, int64_t chunk_rows);

}  // namespace saetraj::sweep
