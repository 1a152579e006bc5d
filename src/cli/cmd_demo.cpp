#include <filesystem>
#include <iostream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/pipeline/collective.h"
#include "saetraj/pipeline/explain_runner.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/gemma_scope.h"
#include "saetraj/sae/gemma_scope_release.h"
#include "saetraj/synth/synth.h"

namespace saetraj::cli {

namespace fs = std::filesystem;

int cmd_demo(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string out = "demo-out";
  std::string analysis = std::string(SAETRAJ_SOURCE_DIR) + "/analysis";
  std::string python = "/usr/bin/python3";
  bool render = true;
  int64_t k = 32;
  int top_t = 10;
  std::string arch = "gpt2";
  po::options_description options("Demo options");
  options.add_options()("out,o", po::value(&out)->default_value(out), "folder for fixtures, sweep, graphs, figures")(
      "arch", po::value(&arch)->default_value(arch),
      "synthetic model: gpt2 or llama (SAE-Lens SAEs), gemma2 (Gemma Scope-layout SAEs)")(
      "k", po::value(&k)->default_value(k), "top features per step")(
      "top-t", po::value(&top_t)->default_value(top_t), "graph filter on final rank")(
      "heads", "also record which attention head brought each newcomer in (sweep --heads)")(
      "orders", po::value<int64_t>()->default_value(0),
      "M > 0: also record leave-one-out and sampled Shapley values over M orders (sweep --orders)")(
      "analysis-dir", po::value(&analysis)->default_value(analysis), "saetraj's analysis/ folder (render.py)")(
      "python", po::value(&python)->default_value(python), "Python with h5py, matplotlib, plotly (Debian's)")(
      "no-render", "skip the pictures");
  po::variables_map vm;
  if (!parse_command("demo", "[--out DIR]", options, {}, args, vm, ctx.comm.rank() == 0)) return 0;
  render = !vm.count("no-render");
  const bool root = ctx.comm.rank() == 0;
  SAETRAJ_CHECK(arch == "gpt2" || arch == "gemma2" || arch == "llama", InputError,
                "--arch must be gpt2, gemma2 or llama, got \"", arch, "\"");
  const bool gemma = arch == "gemma2";
  const bool llama = arch == "llama";
  // Before anything is written or printed: a file where the folder (or one above it) should be.
  for (fs::path p = out; !p.empty() && p != p.parent_path(); p = p.parent_path()) {
    std::error_code ec;
    const auto st = fs::status(p, ec);
    SAETRAJ_CHECK(!fs::exists(st) || fs::is_directory(st), InputError, "--out ", out,
                  p == fs::path(out) ? std::string() : ": " + p.string(),
                  " is a file, not a folder; the demo writes a folder of files: choose a folder for --out (it is "
                  "created if missing)");
  }

  // 1. The synthetic fixture, made once by rank 0.
  const std::string fixtures = out + (gemma ? "/fixtures-gemma2" : llama ? "/fixtures-llama" : "/fixtures");
  pipeline::SweepOptions o;
  o.model = fixtures + (gemma ? "/saetraj-demo-gemma2" : "/model");
  pipeline::run_on_root(ctx.comm, [&] {
    if (!fs::exists(o.model + "/config.json")) {
      std::cerr << "saetraj demo: writing the synthetic model, tokenizer and SAEs to " << fixtures << "\n";
      synth::SynthOptions so;
      so.out = fixtures;
      if (gemma) {
        synth::synth_gemma2_fixture(so);
      } else if (llama) {
        synth::synth_llama_fixture(so);
      } else {
        synth::synth_gpt2_fixture(so);
      }
    }
  });

  // 2. The sweep of the reference prompt, on every rank. Each layer of the Gemma fixture takes its
  // sparser SAE (the one with explanations): the average_l0_X closest to 0.
  if (gemma) {
    const synth::SynthOptions defaults;
    const std::string width = sae::gemma_scope_width_label(defaults.d_sae);
    for (int l = 0; l < defaults.n_layers; ++l) {
      o.saes.push_back(std::to_string(l) + "=" + sae::resolve_gemma_scope(fixtures + "/saes", l, width, 0.0));
    }
  } else {
    o.saes = {fixtures + "/saes/layer_{layer}"};
  }
  o.prompts = {synth::kReferencePrompt};
  o.k = k;
  o.top_t = top_t;
  o.heads = vm.count("heads") > 0;
  o.orders = vm["orders"].as<int64_t>();
  o.out = out + "/demo_sweep.h5";
  o.overwrite = true;
  o.command_line = ctx.command_line;
  pipeline::install_stop_handlers();
  const auto result = pipeline::run_sweep(o, ctx.comm);
  if (!root) return 0;
  SAETRAJ_CHECK(result.complete, Error, "the demo sweep did not complete");

  // 3. Explanations from the fixture's Neuronpedia-style export, 4. pictures and the page.
  pipeline::ExplainOptions eo;
  eo.store.bulk_root = fixtures + "/explanations";
  const auto explained = pipeline::explain_sweep(o.out, eo);
  const std::string figures = out + "/figures";
  if (render) {
    const std::string cmd = python + " '" + analysis + "/render.py' '" + o.out + "' --out '" + figures + "'";
    std::cerr << "saetraj demo: " << cmd << "\n";
    SAETRAJ_CHECK(std::system(cmd.c_str()) == 0, Error, "rendering failed: ", cmd);
  }
  std::cout << "\n== saetraj demo: done ==\n"
            << "ranks:          " << ctx.comm.size() << "\n"
            << "model + SAEs:   " << fixtures
            << (gemma   ? " (synthetic Gemma-2, Gemma Scope-layout SAEs per layer)\n"
                : llama ? " (synthetic Llama-3, SAE-Lens SAEs per layer)\n"
                        : " (synthetic GPT-2, SAE-Lens SAEs per layer)\n")
            << "prompt:         \"" << synth::kReferencePrompt << "\"\n"
            << "sweep (HDF5):   " << o.out << "\n"
            << "graphs (JSON):  " << result.graphs_dir << "\n"
            << "explanations:   " << explained.written << " attached\n";
  if (render) {
    std::cout << "figures (PNG):  " << figures << "/prompt_0000/evolution_layer_*.png, traced_graph.png\n"
              << "page (HTML):    " << figures << "/prompt_0000/traced_graph.html (open it in a browser, offline)\n";
  }
  return 0;
}

}  // namespace saetraj::cli
