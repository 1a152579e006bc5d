// `saetraj bench`: the sweep's encoding kernel on Gemma-2-shaped random data and a whole sweep of the demo
// model, against the machine's measured sgemm rate and against the original research code's way of
// computing the same tables, in one run. A benchmark, never a test: it prints figures and gates nothing.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <sstream>

#include "bench_baseline.h"
#include "bench_gpu.h"
#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/sae.h"
#include "saetraj/sweep/evolution.h"
#include "saetraj/sweep/factored.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/synth/sae_formats.h"
#include "saetraj/synth/synth.h"

namespace saetraj::cli {

namespace {

namespace fs = std::filesystem;

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

// Resident memory now and its peak since the last reset (Linux /proc), in bytes; 0 where unavailable.
int64_t status_bytes(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::atoll(line.c_str() + std::strlen(key)) * 1024;
  }
  return 0;
}
void reset_peak_memory() { std::ofstream("/proc/self/clear_refs") << "5"; }

struct Run {
  double seconds = 0.0;
  sweep::PhaseTimes times;
  int64_t peak_extra = 0;  // peak resident memory above what was resident before the run
  std::vector<int32_t> indices;
  std::vector<float> values;
};

Run run_method(const sae::Sae& sae, sweep::EvolutionRequest req, sweep::Method method, int layers) {
  const int64_t rows = sweep::rows_of_prompt(req.q_end);
  Run r;
  r.indices.resize(rows * req.k);
  r.values.resize(rows * req.k);
  req.method = method;
  const int64_t before = status_bytes("VmRSS:");
  reset_peak_memory();
  const double t0 = now();
  for (int l = 0; l < layers; ++l) sweep::compute_evolution(sae, req, r.indices.data(), r.values.data(), &r.times);
  r.seconds = now() - t0;
  r.peak_extra = std::max<int64_t>(0, status_bytes("VmHWM:") - before);
  return r;
}

// Share of the active entries of `a` whose feature is the same in `b` at the same place.
double agreement(const Run& a, const Run& b) {
  int64_t active = 0, same = 0;
  for (size_t i = 0; i < a.indices.size(); ++i) {
    if (a.indices[i] < 0) continue;
    ++active;
    same += a.indices[i] == b.indices[i];
  }
  return active ? 100.0 * same / active : 100.0;
}

// Mean share of each row's first `top` features of `a` that are among the first `top` of `b`, in any order.
double top_overlap(const Run& a, const Run& b, int64_t k, int64_t top) {
  double sum = 0.0;
  int64_t rows = 0;
  for (size_t r = 0; r < a.indices.size() / k; ++r) {
    std::vector<int32_t> sa, sb;
    for (int64_t i = 0; i < std::min(k, top); ++i) {
      if (a.indices[r * k + i] >= 0) sa.push_back(a.indices[r * k + i]);
      if (b.indices[r * k + i] >= 0) sb.push_back(b.indices[r * k + i]);
    }
    if (sa.empty()) continue;
    std::sort(sa.begin(), sa.end());
    std::sort(sb.begin(), sb.end());
    std::vector<int32_t> both;
    std::set_intersection(sa.begin(), sa.end(), sb.begin(), sb.end(), std::back_inserter(both));
    sum += static_cast<double>(both.size()) / sa.size();
    ++rows;
  }
  return rows ? 100.0 * sum / rows : 100.0;
}

struct KernelOptions {
  int64_t d_model, heads, k, chunk_rows;
  int layers;
  bool baseline;
  std::string work;
};

// The kernel tables for one SAE width.
void bench_kernel(const KernelOptions& o, int64_t d_sae, const std::vector<int64_t>& tokens, double peak) {
  c10::InferenceMode guard;
  torch::manual_seed(0);
  const sae::Sae sae = bench_sae(o.d_model, d_sae);
  const std::string sae_file = o.work + "/baseline_sae_" + std::to_string(d_sae) + ".safetensors";
  if (o.baseline) write_baseline_sae(sae, sae_file);

  std::printf("\n== encoding kernel: d_sae %lld, d_model %lld, %lld heads, k %lld, %d layer(s) per length ==\n",
              (long long)d_sae, (long long)o.d_model, (long long)o.heads, (long long)o.k, o.layers);
  std::printf("useful GFLOP/s = 2 x rows x d_model x d_sae x layers / seconds (the direct method's work)\n");
  std::printf("%6s %7s | %9s %8s %6s | %9s %8s %6s | %8s %8s | %10s %9s | %7s\n", "tokens", "rows", "direct s",
              "GFLOP/s", "sgemm", "factor s", "GFLOP/s", "sgemm", "speed-up", "auto", "baseline s", "auto/base",
              "agree");
  struct Line {
    int64_t n, rows;
    Run direct, factored;
  };
  std::vector<Line> lines;
  std::vector<std::string> bf16_lines;
  sae::Sae sae_bf16 = sae;
  sae_bf16.w_enc = sae.w_enc.to(torch::kBFloat16);
  double assembly_seconds = 0.0, assembly_madds = 0.0, projection_seconds = 0.0, projection_madds = 0.0;
  for (int64_t n : tokens) {
    SAETRAJ_CHECK(n >= 2, InputError, "--tokens must be >= 2, got ", n);
    auto scores = torch::randn({o.heads, n, n});
    scores.masked_fill_(torch::ones({n, n}, torch::kBool).triu(1), -std::numeric_limits<float>::infinity());
    sweep::AttentionParts parts{torch::softmax(scores, -1), torch::randn({o.heads, n, o.d_model}) * 0.3, {}};
    const auto resid = torch::randn({n, o.d_model});
    sweep::EvolutionRequest req;
    req.resid_pre = &resid;
    req.parts = &parts;
    req.q_begin = 1;
    req.q_end = n;
    req.k = o.k;
    req.chunk_rows = o.chunk_rows;
    const int64_t rows = sweep::rows_of_prompt(n);
    Line line{n, rows, run_method(sae, req, sweep::Method::Direct, o.layers),
              run_method(sae, req, sweep::Method::Factored, o.layers)};
    const sweep::Method chosen = sweep::choose_method(n, o.heads, o.d_model, d_sae);
    const double ours = chosen == sweep::Method::Factored ? line.factored.seconds : line.direct.seconds;
    double base = 0.0;
    if (o.baseline) {
      std::vector<int32_t> bi(rows * o.k);
      std::vector<float> bv(rows * o.k);
      const double t0 = now();
      for (int l = 0; l < o.layers; ++l) baseline_evolution(sae_file, sae.cfg, resid, parts, o.k, bi.data(), bv.data());
      base = now() - t0;
    }
    // The same tables with W_enc stored in bfloat16, by the method auto picks, against float32.
    const Run bf16 = run_method(sae_bf16, req, chosen, o.layers);
    const Run& f32 = chosen == sweep::Method::Factored ? line.factored : line.direct;
    bf16_lines.push_back(str(n, "\t", bf16.seconds, "\t", f32.seconds, "\t", agreement(f32, bf16), "\t",
                             top_overlap(f32, bf16, o.k, 20), "\t", top_overlap(f32, bf16, o.k, o.k)));
    const double work = 2.0 * rows * o.d_model * d_sae * o.layers / 1e9;
    const double rd = work / line.direct.seconds, rf = work / line.factored.seconds;
    std::printf("%6lld %7lld | %9.3f %8.1f %5.0f%% | %9.3f %8.1f %5.0f%% | %7.2fx %8s | %10s %9s | %6.2f%%\n",
                (long long)n, (long long)rows, line.direct.seconds, rd, 100.0 * rd / peak, line.factored.seconds, rf,
                100.0 * rf / peak, line.direct.seconds / line.factored.seconds, sweep::method_name(chosen),
                o.baseline ? str(base).substr(0, 8).c_str() : "-",
                o.baseline ? (str(base / ours).substr(0, 5) + "x").c_str() : "-",
                agreement(line.direct, line.factored));
    const int64_t heads = o.heads;
    assembly_seconds += line.factored.times.topk;
    assembly_madds += static_cast<double>(rows) * heads * d_sae * o.layers;
    projection_seconds += line.factored.times.encode;
    projection_madds += ((heads + 1.0) * n + 2.0) * o.d_model * d_sae * o.layers;
    lines.push_back(std::move(line));
  }
  std::printf("time breakdown (s): %6s %8s | %9s %9s %9s | %9s %9s %9s\n", "tokens", "", "decomp", "encode",
              "top-k", "scalars", "project", "assemble");
  for (const auto& l : lines) {
    std::printf("                    %6lld %8s | %9.3f %9.3f %9.3f | %9.3f %9.3f %9.3f\n", (long long)l.n, "",
                l.direct.times.decompose, l.direct.times.encode, l.direct.times.topk, l.factored.times.decompose,
                l.factored.times.encode, l.factored.times.topk);
  }
  std::printf("bf16 W_enc (auto method): %6s %9s %9s %22s %16s %16s\n", "tokens", "bf16 s", "f32 s",
              "same feature same rank", "top-20 overlap", "top-k overlap");
  for (const auto& l : bf16_lines) {
    std::istringstream in(l);
    double n, tb, tf, same, o20, ok;
    in >> n >> tb >> tf >> same >> o20 >> ok;
    std::printf("                          %6.0f %9.3f %9.3f %21.2f%% %15.2f%% %15.2f%%\n", n, tb, tf, same, o20, ok);
  }
  if (assembly_madds > 0 && projection_madds > 0) {
    std::printf("assembly cost: %.1f projection multiply-adds per assembly multiply-add (cost model uses %.0f)\n",
                (assembly_seconds / assembly_madds) / (projection_seconds / projection_madds), sweep::kAssemblyCost);
  }
  int64_t peak_direct = 0, peak_factored = 0;
  for (const auto& l : lines) {
    peak_direct = std::max(peak_direct, l.direct.peak_extra);
    peak_factored = std::max(peak_factored, l.factored.peak_extra);
  }
  const double w_enc = 4.0 * o.d_model * d_sae;
  const double chunk = 4.0 * o.chunk_rows * d_sae;  // one chunk's product: the working set both methods bound
  std::printf("memory: W_enc %s; one chunk's working set %s (chunk-rows x d_sae floats); peak above the resident "
              "W_enc: direct %s, factored %s, so (W_enc + peak above it) / (W_enc + chunk) = %.2f and %.2f; "
              "whole process now %s (libraries included)\n",
              human_bytes(w_enc).c_str(), human_bytes(chunk).c_str(), human_bytes(peak_direct).c_str(),
              human_bytes(peak_factored).c_str(), (w_enc + peak_direct) / (w_enc + chunk),
              (w_enc + peak_factored) / (w_enc + chunk), human_bytes(status_bytes("VmRSS:")).c_str());
  if (o.baseline) fs::remove(sae_file);
}

void print_demo(const pipeline::SweepOptions& o, const pipeline::SweepResult& r, double seconds, int64_t peak);

// The cost of an optional view (`extra` switches it on) as a ratio to one plain sweep of the same prompts:
// plain sweeps and sweeps with the view interleaved for `rounds` rounds, best of each (the machine's noise
// hits both alike).
void bench_ratio(pipeline::SweepOptions o, int rounds, const CommandContext& ctx, const std::string& what,
                 const std::function<void(pipeline::SweepOptions&)>& extra) {
  pipeline::SweepOptions with = o;
  extra(with);
  double plain = 1e300, extended = 1e300;
  for (int round = 0; round < rounds; ++round) {
    for (const auto* options : {&o, &with}) {
      const double t0 = now();
      pipeline::run_sweep(*options, ctx.comm);
      double& best = options == &o ? plain : extended;
      best = std::min(best, now() - t0);
    }
  }
  if (ctx.comm.rank() != 0) return;
  std::printf("%s: plain sweep %.3f s, with it %.3f s: %.2fx one plain sweep (best of %d interleaved rounds)\n",
              what.c_str(), plain, extended, extended / plain, rounds);
  std::fflush(stdout);
}

// A whole sweep of the demo model (synthetic GPT-2) in this process: the phase breakdown of a real run.
void bench_demo(const std::string& work, const std::vector<int64_t>& tokens, bool head_split, int64_t orders,
                bool mlp, const CommandContext& ctx) {
  const std::string fixture = work + "/demo-fixture";
  if (ctx.comm.rank() == 0 && !fs::exists(fixture + "/model/config.json")) {
    synth::SynthOptions so;
    so.out = fixture;
    synth::synth_gpt2_fixture(so);
  }
  ctx.comm.barrier();
  pipeline::SweepOptions o;
  o.model = fixture + "/model";
  o.saes = {fixture + "/saes/layer_{layer}"};
  const synth::SynthOptions defaults;
  // Token-id prompts of the benchmark's lengths (the demo model's context allows up to n_ctx).
  for (int64_t n : tokens) {
    if (n > defaults.n_ctx) continue;
    std::ostringstream ids;
    for (int64_t i = 0; i < n; ++i) ids << (i ? "," : "") << (37 * i + 11) % 256;
    o.prompt_ids.push_back(ids.str());
  }
  o.out = work + "/demo-bench.h5";
  o.overwrite = true;
  o.graphs = false;
  reset_peak_memory();
  const double t0 = now();
  const auto r = pipeline::run_sweep(o, ctx.comm);
  const double seconds = now() - t0;
  const int64_t peak = status_bytes("VmHWM:");  // this sweep's peak, not the kernel tables' before it
  if (ctx.comm.rank() == 0) print_demo(o, r, seconds, peak);
  if (head_split) {
    bench_ratio(o, 3, ctx, "head split (sweep --heads, T = " + std::to_string(o.top_t) + ")",
                [](pipeline::SweepOptions& x) { x.heads = true; });
  }
  if (orders > 0) {
    bench_ratio(o, 3, ctx,
                "order-free views (sweep --orders " + std::to_string(orders) + ", T = " + std::to_string(o.top_t) + ")",
                [orders](pipeline::SweepOptions& x) { x.orders = orders; });
  }
  if (mlp) {
    // Random SAE-Lens skip transcoders of the demo model's layers, as wide as its SAEs (synth --transcoders).
    const std::string pattern = fixture + "/transcoders/layer_{layer}";
    if (ctx.comm.rank() == 0) {
      for (int l = 0; l < defaults.n_layers; ++l) {
        const std::string folder = fixture + "/transcoders/layer_" + std::to_string(l);
        if (fs::exists(folder + "/cfg.json")) continue;
        synth::write_sae_lens_transcoder(folder, "jumprelu_skip_transcoder", l,
                                         synth::random_raw_transcoder(defaults.d_model, defaults.d_model, defaults.d_sae,
                                                                      true, 4242 + static_cast<uint64_t>(l)));
      }
    }
    ctx.comm.barrier();
    bench_ratio(o, 3, ctx, "MLP path (sweep --mlp-transcoder, every layer)",
                [pattern](pipeline::SweepOptions& x) { x.mlp_transcoders = {pattern}; });
  }
}

void print_demo(const pipeline::SweepOptions& o, const pipeline::SweepResult& r, double seconds, int64_t peak) {
  const synth::SynthOptions defaults;
  std::printf("\n== whole sweep of the demo model (%d layers, d_model %d, d_sae %d, %lld prompts) ==\n",
              defaults.n_layers, defaults.d_model, defaults.d_sae, (long long)o.prompt_ids.size());
  const auto& t = r.times;
  std::printf("%.3f s: start-up %.3f, forward %.3f, exchange %.3f, decomposition %.3f, encoding %.3f, top-k "
              "%.3f, HDF5 writes %.3f, other %.3f; finishing the file %.3f\n",
              seconds, t.startup, t.forward, t.exchange, t.decompose, t.encode, t.topk, t.write, t.other,
              seconds - (t.startup + t.measured_loop() + t.other));
  std::printf("rank 0 peak memory during the sweep %s (SAEs %s)\n", human_bytes(static_cast<double>(peak)).c_str(),
              human_bytes(static_cast<double>(r.sae_bytes)).c_str());
  std::fflush(stdout);
}

}  // namespace

int cmd_bench(const std::vector<std::string>& args, const CommandContext& ctx) {
  KernelOptions o{2304, 8, 400, 2048, 1, true, "bench-work"};
  std::vector<int64_t> tokens, widths;
  bool no_baseline = false, no_demo = false, no_kernel = false, head_split = false, mlp = false;
  int64_t orders = 0;
  std::string device = "cpu";
  GpuBenchOptions gpu;
  po::options_description options("Bench options");
  options.add_options()("d-model", po::value(&o.d_model)->default_value(o.d_model), "residual width (Gemma-2-2b: 2304)")(
      "d-sae", po::value(&widths)->multitoken(), "SAE widths (default 16384)")(
      "heads", po::value(&o.heads)->default_value(o.heads), "attention heads")(
      "tokens", po::value(&tokens)->multitoken(), "prompt lengths (default 24 64 128 256)")(
      "layers", po::value(&o.layers)->default_value(o.layers), "layers timed per prompt length")(
      "k", po::value(&o.k)->default_value(o.k), "top-k")(
      "chunk-rows", po::value(&o.chunk_rows)->default_value(o.chunk_rows), "rows per matrix product")(
      "work", po::value(&o.work)->default_value(o.work), "folder for the baseline's SAE files and the demo fixture")(
      "no-baseline", po::bool_switch(&no_baseline), "skip the original code's method (the slowest part)")(
      "no-demo", po::bool_switch(&no_demo), "skip the whole sweep of the demo model")(
      "no-kernel", po::bool_switch(&no_kernel), "skip the Gemma-shaped kernel tables")(
      "head-split", po::bool_switch(&head_split),
      "also time the demo sweep with --heads (which head brought each newcomer in) against the plain sweep, "
      "as a ratio (3 interleaved rounds)")(
      "orders", po::value(&orders)->default_value(orders),
      "M >= 2: also time the demo sweep with --orders M (leave-one-out and sampled Shapley values) against the "
      "plain sweep, as a ratio (3 interleaved rounds)")(
      "mlp-transcoder", po::bool_switch(&mlp),
      "also time the demo sweep with --mlp-transcoder (random transcoders of every layer, written next to the demo "
      "fixture) against the plain sweep, as a ratio (3 interleaved rounds)")(
      "device", po::value(&device)->default_value(device),
      "cpu, or cuda: the GPU benchmark (26 Gemma-2-2b-shaped layers, 65k JumpReLU SAEs, N = 24 128 256; "
      "--d-sae, --tokens, --layers, --k change it)")(
      "gpu", po::value(&gpu.device)->default_value(gpu.device), "with --device cuda: the GPU to use");
  po::variables_map vm;
  if (!parse_command("bench", "[--d-sae W ...] [--tokens N ...] [--layers L]", options, {}, args, vm,
                     ctx.comm.rank() == 0)) {
    return 0;
  }
  if (device == "cuda") {
    if (ctx.comm.rank() != 0) return 0;
    if (!tokens.empty()) gpu.tokens = tokens;
    if (!widths.empty()) gpu.d_sae = widths.front();
    if (!vm["layers"].defaulted()) gpu.layers = o.layers;
    gpu.k = o.k;
    gpu.d_model = o.d_model;
    gpu.heads = o.heads;
    gpu.chunk_rows = o.chunk_rows;
    gpu.baseline = !no_baseline;
    return bench_gpu(gpu);
  }
  SAETRAJ_CHECK(device == "cpu", InputError, "bench --device must be cpu or cuda, got \"", device, "\"");
  SAETRAJ_CHECK(orders == 0 || orders >= 2, InputError, "bench --orders must be 0 (off) or at least 2, got ", orders);
  SAETRAJ_CHECK(!(no_demo && (orders > 0 || head_split || mlp)), InputError,
                "bench --orders, --head-split and --mlp-transcoder time the demo sweep; they cannot go with --no-demo");
  if (tokens.empty()) tokens = {24, 64, 128, 256};
  if (widths.empty()) widths = {16384};
  o.baseline = !no_baseline;
  fs::create_directories(o.work);
  if (!no_kernel && ctx.comm.rank() == 0) {
    const double peak = sgemm_rate(o.chunk_rows, o.d_model, widths.front(), 3);
    std::printf("machine: %d thread(s); sgemm [%lld x %lld] x [%lld x %lld]: %.1f GFLOP/s\n", torch::get_num_threads(),
                (long long)o.chunk_rows, (long long)o.d_model, (long long)o.d_model, (long long)widths.front(), peak);
    for (int64_t w : widths) bench_kernel(o, w, tokens, peak);
  }
  if (!no_demo) bench_demo(o.work, tokens, head_split, orders, mlp, ctx);
  std::fflush(stdout);
  return 0;
}

}  // namespace saetraj::cli
