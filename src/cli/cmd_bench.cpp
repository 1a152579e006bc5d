// `saetraj bench`: the encoding kernel of the sweep on Gemma-2-shaped random data, against the machine's
// measured sgemm rate, in one run. A benchmark, never a test: it prints figures and gates nothing.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/sae/sae.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::cli {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Best of `repeats` products [rows, d_in] x [d_in, d_sae], in GFLOP/s.
double sgemm_rate(int64_t rows, int64_t d_in, int64_t d_sae, int repeats) {
  const auto a = torch::randn({rows, d_in});
  const auto b = torch::randn({d_in, d_sae});
  auto c = torch::mm(a, b);  // warm-up
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const double t0 = now();
    torch::mm_out(c, a, b);
    best = std::min(best, now() - t0);
  }
  return 2.0 * rows * d_in * d_sae / best / 1e9;
}

}  // namespace

int cmd_bench(const std::vector<std::string>& args, const CommandContext& ctx) {
  int64_t d_model = 2304, d_sae = 16384, heads = 8, k = 400, chunk_rows = 2048;
  std::vector<int64_t> tokens;
  int layers = 2;
  po::options_description options("Bench options");
  options.add_options()("d-model", po::value(&d_model)->default_value(d_model), "residual width (Gemma-2-2b: 2304)")(
      "d-sae", po::value(&d_sae)->default_value(d_sae), "SAE width")(
      "heads", po::value(&heads)->default_value(heads), "attention heads")(
      "tokens", po::value(&tokens)->multitoken(), "prompt lengths (default 24 64)")(
      "layers", po::value(&layers)->default_value(layers), "layers timed per prompt length")(
      "k", po::value(&k)->default_value(k), "top-k")(
      "chunk-rows", po::value(&chunk_rows)->default_value(chunk_rows), "rows per matrix product");
  po::variables_map vm;
  if (!parse_command("bench", "[--d-sae W] [--tokens N ...]", options, {}, args, vm, ctx.comm.rank() == 0)) return 0;
  if (tokens.empty()) tokens = {24, 64};
  c10::InferenceMode guard;
  torch::manual_seed(0);

  const double peak = sgemm_rate(chunk_rows, d_model, d_sae, 3);
  std::printf("machine: %d thread(s); sgemm [%lld x %lld] x [%lld x %lld]: %.1f GFLOP/s\n", torch::get_num_threads(),
              (long long)chunk_rows, (long long)d_model, (long long)d_model, (long long)d_sae, peak);

  // A JumpReLU SAE with about 100 active features per row, like Gemma Scope's canonical L0.
  sae::Sae sae;
  sae.cfg.d_in = d_model;
  sae.cfg.d_sae = d_sae;
  sae.cfg.activation = sae::Activation::JumpReLU;
  sae.cfg.apply_b_dec_to_input = false;
  sae.w_enc = torch::randn({d_model, d_sae}) / std::sqrt(static_cast<double>(d_model));
  sae.b_enc = torch::zeros({d_sae});
  sae.b_dec = torch::zeros({d_model});
  sae.threshold = torch::full({d_sae}, 2.5f);

  std::printf("%6s %8s %10s %10s %8s %10s %10s %10s\n", "tokens", "rows", "seconds", "GFLOP/s", "of sgemm",
              "decomp s", "encode s", "top-k s");
  for (int64_t n : tokens) {
    SAETRAJ_CHECK(n >= 2, InputError, "--tokens must be >= 2");
    auto scores = torch::randn({heads, n, n});
    scores.masked_fill_(torch::ones({n, n}, torch::kBool).triu(1), -std::numeric_limits<float>::infinity());
    sweep::AttentionParts parts{torch::softmax(scores, -1), torch::randn({heads, n, d_model}) * 0.3, {}};
    const auto resid = torch::randn({n, d_model});
    sweep::EvolutionRequest req;
    req.resid_pre = &resid;
    req.parts = &parts;
    req.post_attention = [](const torch::Tensor& x) { return x; };
    req.q_begin = 1;
    req.q_end = n;
    req.k = k;
    req.chunk_rows = chunk_rows;
    const int64_t rows = sweep::rows_of_prompt(n);
    std::vector<int32_t> indices(rows * k);
    std::vector<float> values(rows * k);
    sweep::PhaseTimes times;
    const double t0 = now();
    for (int l = 0; l < layers; ++l) sweep::compute_evolution(sae, req, indices.data(), values.data(), &times);
    const double seconds = now() - t0;
    const double gflops = 2.0 * rows * d_model * d_sae * layers / seconds / 1e9;
    std::printf("%6lld %8lld %10.3f %10.1f %7.0f%% %10.3f %10.3f %10.3f\n", (long long)n, (long long)rows, seconds,
                gflops, 100.0 * gflops / peak, times.decompose, times.encode, times.topk);
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("peak memory %s; W_enc %s\n", human_bytes(usage.ru_maxrss * 1024.0).c_str(),
              human_bytes(4.0 * d_model * d_sae).c_str());
  return 0;
}

}  // namespace saetraj::cli
