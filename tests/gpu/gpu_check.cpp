// The GPU check (tests/gpu/device_check.sh): the GPU path on CUDA tensors against the CPU kernels on the
// same data, for every SAE kind and both methods; the GPU path's rows independent of the query split and
// identical from run to run (what makes a sweep's file the same for 1, 2 or 3 ranks); then the GPU
// benchmark (bench_gpu.h). Needs LibTorch alone, so that it builds on GPU machines without the MPI, HDF5
// and other development packages the full saetraj needs.
//
//   saetraj_gpu_check agreement      exit 0 when every comparison passes
//   saetraj_gpu_check bench [N ...]  the GPU benchmark (prompt lengths N; default 24 128 256)
#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "../../src/cli/bench_gpu.h"
#include "../support/evolution_fixture.h"
#include "saetraj/core/error.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/rows.h"

using namespace saetraj;

namespace {

namespace tc = saetraj::testing;

int agreement(const torch::Device& device) {
  int failures = 0;
  uint64_t seed = 41;
  const int64_t k = 40, n = 33;
  for (const auto& c : tc::every_case()) {
    const auto cpu = tc::make_fixture(c, 4, n, 48, 2000, seed++);
    const auto gpu = tc::to_device(cpu, device);
    for (auto method : {sweep::Method::Direct, sweep::Method::Factored}) {
      const auto a = tc::run(cpu, method, 1, n, k, 64);
      const auto b = tc::run(gpu, method, 1, n, k, 64);
      const int64_t bad = tc::unexplained_differences(a, b, k);
      std::printf("agreement %-40s %-8s CPU kernels vs CUDA: %lld unexplained of %zu entries: %s\n", c.name.c_str(),
                  sweep::method_name(method), (long long)bad, a.idx.size(), bad ? "FAIL" : "ok");
      failures += bad != 0;
    }
  }
  // Rank independence and run-to-run determinism on the GPU: a run of whole chunks gives exactly the rows
  // of the whole range, and a second run the same bytes.
  const tc::Case gemma{"gemma-like", sae::Activation::JumpReLU, sae::Normalization::None, false, true, true, true};
  const auto gpu = tc::to_device(tc::make_fixture(gemma, 8, 64, 64, 4096, 7), device);
  for (auto method : {sweep::Method::Direct, sweep::Method::Factored}) {
    const int64_t chunk_rows = 300;
    const auto whole = tc::run(gpu, method, 1, 64, k, chunk_rows), again = tc::run(gpu, method, 1, 64, k, chunk_rows);
    const auto chunks = sweep::evolution_chunks(1, 64, chunk_rows);
    const int64_t q0 = chunks[1].first, q1 = chunks[chunks.size() - 2].second;
    const auto part = tc::run(gpu, method, q0, q1, k, chunk_rows);
    const size_t offset = static_cast<size_t>((sweep::rows_of_prompt(q0) - sweep::rows_of_prompt(1)) * k);
    bool same = whole.idx == again.idx && whole.val == again.val;
    for (size_t i = 0; same && i < part.idx.size(); ++i) {
      same = part.idx[i] == whole.idx[offset + i] && part.val[i] == whole.val[offset + i];
    }
    std::printf("determinism %-8s repeated run and query split [%lld, %lld) identical on the GPU: %s\n",
                sweep::method_name(method), (long long)q0, (long long)q1, same ? "ok" : "FAIL");
    failures += !same;
  }
  std::printf("agreement: %s\n", failures ? "FAILED" : "passed");
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string what = argc > 1 ? argv[1] : "agreement";
    if (!torch::cuda::is_available()) {
      std::fprintf(stderr, "saetraj_gpu_check: no CUDA device is visible\n");
      return 77;
    }
    // As a sweep on CUDA sets them up (pipeline/compute_device.h): deterministic cuBLAS, no TF32.
    setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0);
    at::globalContext().setFloat32MatmulPrecision("highest");
    const torch::Device device(torch::kCUDA, 0);
    if (what == "agreement") return agreement(device);
    if (what == "bench") {
      cli::GpuBenchOptions o;
      if (argc > 2) o.tokens.clear();
      for (int i = 2; i < argc; ++i) o.tokens.push_back(std::atoll(argv[i]));
      return cli::bench_gpu(o);
    }
    std::fprintf(stderr, "usage: saetraj_gpu_check agreement | bench [N ...]\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "saetraj_gpu_check: %s\n", e.what());
    return 1;
  }
}
