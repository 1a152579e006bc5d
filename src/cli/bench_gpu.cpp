#include "bench_gpu.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/pipeline/gpu_memory.h"
#include "saetraj/sae/sae.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::cli {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Best of five float32 products [rows, d_in] x [d_in, d_sae] on the GPU (TF32 off), in GFLOP/s.
double gpu_sgemm_rate(const torch::Device& device, int64_t rows, int64_t d_in, int64_t d_sae) {
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const auto a = torch::randn({rows, d_in}, options), b = torch::randn({d_in, d_sae}, options);
  auto c = torch::mm(a, b);
  torch::cuda::synchronize(device.index());
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    const double t0 = now();
    torch::mm_out(c, a, b);
    torch::cuda::synchronize(device.index());
    best = std::min(best, now() - t0);
  }
  return 2.0 * rows * d_in * d_sae / best / 1e9;
}

// The original code's method on the GPU, one layer of one prompt: for each query the SAE (W_enc and W_dec)
// goes to the GPU, its q+2 vectors are encoded, torch::topk takes the k largest of all d_sae activations,
// and the SAE's GPU copy is dropped (the original code moved it back to the host).
void baseline_layer(const torch::Tensor& w_enc_host, const torch::Tensor& w_dec_host, const sae::Sae& sae,
                    const torch::Tensor& resid, const sweep::AttentionParts& parts, int64_t k,
                    const torch::Device& device) {
  const int64_t n = resid.size(0);
  for (int64_t q = 1; q < n; ++q) {
    const auto w_enc = w_enc_host.to(device), w_dec = w_dec_host.to(device);
    const auto a = sweep::source_contributions(parts, q);  // [q+1, d]
    const auto x = torch::cat({resid[q].unsqueeze(0), resid[q].unsqueeze(0) + a.cumsum(0)}, 0);
    auto pre = torch::addmm(sae.b_enc, x, w_enc);
    const auto acts = pre.relu_().mul_(pre.gt(sae.threshold));
    const auto top = acts.topk(k, 1);
    (void)std::get<0>(top).to(torch::kCPU);
    (void)w_dec.to(torch::kCPU);
  }
}

}  // namespace

sae::Sae bench_sae(int64_t d_model, int64_t d_sae, const torch::TensorOptions& options) {
  sae::Sae s;
  s.cfg.d_in = d_model;
  s.cfg.d_sae = d_sae;
  s.cfg.activation = sae::Activation::JumpReLU;
  s.cfg.apply_b_dec_to_input = false;
  s.w_enc = torch::randn({d_model, d_sae}, options) / std::sqrt(static_cast<double>(d_model));
  s.b_enc = torch::zeros({d_sae}, options);
  s.b_dec = torch::zeros({d_model}, options);
  s.threshold = torch::full({d_sae}, 2.5f, options);
  return s;
}

int bench_gpu(const GpuBenchOptions& o) {
  c10::InferenceMode guard;
  SAETRAJ_CHECK(torch::cuda::is_available(), InputError, "bench --device cuda: no CUDA device is visible");
  const torch::Device device(torch::kCUDA, static_cast<c10::DeviceIndex>(o.device));
  at::globalContext().setFloat32MatmulPrecision("highest");
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  torch::manual_seed(0);
  const double rate = gpu_sgemm_rate(device, o.chunk_rows, o.d_model, o.d_sae);
  std::printf("GPU %d: float32 product [%lld x %lld] x [%lld x %lld]: %.0f GFLOP/s (TF32 off)\n", o.device,
              (long long)o.chunk_rows, (long long)o.d_model, (long long)o.d_model, (long long)o.d_sae, rate);

  std::vector<sae::Sae> saes;
  for (int l = 0; l < o.layers; ++l) saes.push_back(bench_sae(o.d_model, o.d_sae, options));
  std::printf("%d layers x d_sae %lld, d_model %lld, %lld heads, k %lld: SAE encoders %s on the GPU\n", o.layers,
              (long long)o.d_sae, (long long)o.d_model, (long long)o.heads, (long long)o.k,
              human_bytes(static_cast<double>(saes.front().bytes()) * o.layers).c_str());
  std::printf("%6s %7s | %9s %6s | %9s %6s | %9s | %10s %8s\n", "tokens", "rows", "direct s", "% mm", "factor s",
              "% mm", "peak GPU", "baseline s", "vs base");
  torch::Tensor workspace;
  for (int64_t n : o.tokens) {
    SAETRAJ_CHECK(n >= 2, InputError, "--tokens must be >= 2, got ", n);
    auto scores = torch::randn({o.heads, n, n}, options);
    scores.masked_fill_(torch::ones({n, n}, torch::dtype(torch::kBool).device(device)).triu(1),
                        -std::numeric_limits<float>::infinity());
    sweep::AttentionParts parts{torch::softmax(scores, -1), torch::randn({o.heads, n, o.d_model}, options) * 0.3, {}};
    const auto resid = torch::randn({n, o.d_model}, options);
    const int64_t rows = sweep::rows_of_prompt(n);
    std::vector<int32_t> indices(rows * o.k);
    std::vector<float> values(rows * o.k);
    sweep::EvolutionRequest req;
    req.resid_pre = &resid;
    req.parts = &parts;
    req.q_begin = 1;
    req.q_end = n;
    req.k = o.k;
    req.chunk_rows = o.chunk_rows;
    req.device = device;
    req.workspace = &workspace;
    double seconds[2];
    int64_t peak = 0;
    for (int m = 0; m < 2; ++m) {
      req.method = m == 0 ? sweep::Method::Direct : sweep::Method::Factored;
      sweep::compute_evolution(saes[0], req, indices.data(), values.data());  // warm-up
      torch::cuda::synchronize(o.device);
      pipeline::gpu_reset_peak(o.device);
      const double t0 = now();
      for (const auto& s : saes) sweep::compute_evolution(s, req, indices.data(), values.data());
      torch::cuda::synchronize(o.device);
      seconds[m] = now() - t0;
      peak = std::max(peak, pipeline::gpu_peak_allocated(o.device));
    }
    const double work = 2.0 * rows * o.d_model * o.d_sae * o.layers / 1e9;  // the direct method's GFLOP
    std::string base = "-", ratio = "-";
    if (o.baseline && n == o.tokens.front()) {
      const auto w_enc_host = saes[0].w_enc.to(torch::kCPU), w_dec_host = w_enc_host.t().contiguous();
      const double t0 = now();
      for (int l = 0; l < o.layers; ++l) baseline_layer(w_enc_host, w_dec_host, saes[0], resid, parts, o.k, device);
      torch::cuda::synchronize(o.device);
      const double b = now() - t0;
      base = str(b).substr(0, 7);
      ratio = str(b / std::min(seconds[0], seconds[1])).substr(0, 6) + "x";
    }
    std::printf("%6lld %7lld | %9.4f %5.0f%% | %9.4f %5.0f%% | %9s | %10s %8s\n", (long long)n, (long long)rows,
                seconds[0], 100.0 * work / seconds[0] / rate, seconds[1], 100.0 * work / seconds[1] / rate,
                human_bytes(static_cast<double>(peak)).c_str(), base.c_str(), ratio.c_str());
  }
  std::printf("(%% mm: the direct method's work, 2 x rows x d_model x d_sae x layers, per second, against the "
              "measured product rate; the factored method does less work, so it can exceed 100%%)\n");
  std::fflush(stdout);
  return 0;
}

}  // namespace saetraj::cli
