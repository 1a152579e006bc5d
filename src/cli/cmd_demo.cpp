#include <filesystem>
#include <iostream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/pipeline/collective.h"
#include "saetraj/pipeline/explain_runner.h"
#include "saetraj/pipeline/sweep_runner.h"
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
  po::options_description options("Demo options");
  options.add_options()("out,o", po::value(&out)->default_value(out), "folder for fixtures, sweep, graphs, figures")(
      "k", po::value(&k)->default_value(k), "top features per step")(
      "top-t", po::value(&top_t)->default_value(top_t), "graph filter on final rank")(
      "analysis-dir", po::value(&analysis)->default_value(analysis), "saetraj's analysis/ folder (render.py)")(
      "python", po::value(&python)->default_value(python), "Python with h5py, matplotlib, plotly (Debian's)")(
      "no-render", "skip the pictures");
  po::variables_map vm;
  if (!parse_command("demo", "[--out DIR]", options, {}, args, vm, ctx.comm.rank() == 0)) return 0;
  render = !vm.count("no-render");
  const bool root = ctx.comm.rank() == 0;

  // 1. The synthetic GPT-2 fixture, made once by rank 0.
  const std::string fixtures = out + "/fixtures";
  synth::SynthResult fx;
  pipeline::run_on_root(ctx.comm, [&] {
    if (!fs::exists(fixtures + "/model/config.json")) {
      std::cerr << "saetraj demo: writing the synthetic model, tokenizer and SAEs to " << fixtures << "\n";
      synth::SynthOptions so;
      so.out = fixtures;
      synth::synth_gpt2_fixture(so);
    }
  });

  // 2. The sweep of the reference prompt, on every rank.
  pipeline::SweepOptions o;
  o.model = fixtures + "/model";
  o.saes = {fixtures + "/saes/layer_{layer}"};
  o.prompts = {synth::kReferencePrompt};
  o.k = k;
  o.top_t = top_t;
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
            << "model + SAEs:   " << fixtures << " (synthetic GPT-2, " << "SAE-Lens SAEs per layer)\n"
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
