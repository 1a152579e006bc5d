#include <iostream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/synth/synth.h"

namespace saetraj::cli {

int cmd_synth(const std::vector<std::string>& args, const CommandContext& ctx) {
  synth::SynthOptions o;
  po::options_description options("Synth options");
  options.add_options()("out,o", po::value(&o.out)->required(), "folder to write (model/, saes/, explanations/)")(
      "seed", po::value(&o.seed)->default_value(o.seed), "random seed (same seed, same files)")(
      "layers", po::value(&o.n_layers)->default_value(o.n_layers), "number of layers")(
      "d-model", po::value(&o.d_model)->default_value(o.d_model), "hidden size")(
      "heads", po::value(&o.n_heads)->default_value(o.n_heads), "attention heads")(
      "d-mlp", po::value(&o.d_mlp)->default_value(o.d_mlp), "MLP size")(
      "vocab", po::value(&o.vocab_size)->default_value(o.vocab_size), "tokenizer vocabulary size")(
      "context", po::value(&o.n_ctx)->default_value(o.n_ctx), "positions")(
      "d-sae", po::value(&o.d_sae)->default_value(o.d_sae), "SAE width");
  po::variables_map vm;
  if (!parse_command("synth", "--out DIR [options]", options, {}, args, vm, ctx.comm.rank() == 0)) return 0;
  if (ctx.comm.rank() != 0) return 0;
  const auto r = synth::synth_gpt2_fixture(o);
  std::cout << "model: " << r.model_dir << "\nSAEs: " << r.sae_pattern << "\nexplanations: " << r.explanations_root
            << "\n";
  return 0;
}

}  // namespace saetraj::cli
