#include <iostream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/synth/sae_formats.h"
#include "saetraj/synth/synth.h"

namespace saetraj::cli {

int cmd_synth(const std::vector<std::string>& args, const CommandContext& ctx) {
  synth::SynthOptions o;
  std::string arch = "gpt2";
  bool transcoders = false;
  po::options_description options("Synth options");
  options.add_options()("out,o", po::value(&o.out)->required(),
                        "folder to write (the model, saes/, explanations/)")(
      "arch", po::value(&arch)->default_value(arch),
      "gpt2 (SAE-Lens SAEs), gemma2 (BF16 shards, SentencePiece, Gemma Scope-layout SAEs), gemma3 (Gemma Scope "
      "2-layout SAEs), llama, or qwen3 (SAE-Lens TopK SAEs)")(
      "seed", po::value(&o.seed)->default_value(o.seed), "random seed (same seed, same files)")(
      "layers", po::value(&o.n_layers)->default_value(o.n_layers), "number of layers")(
      "d-model", po::value(&o.d_model)->default_value(o.d_model), "hidden size")(
      "heads", po::value(&o.n_heads)->default_value(o.n_heads), "attention heads")(
      "d-mlp", po::value(&o.d_mlp)->default_value(o.d_mlp), "MLP size")(
      "vocab", po::value(&o.vocab_size)->default_value(o.vocab_size), "tokenizer vocabulary size")(
      "context", po::value(&o.n_ctx)->default_value(o.n_ctx), "positions")(
      "d-sae", po::value(&o.d_sae)->default_value(o.d_sae), "SAE width")(
      "kv-heads", po::value(&o.n_kv_heads)->default_value(o.n_kv_heads),
      "gemma2, gemma3, qwen3: key/value heads (0: heads / 2)")(
      "sliding-window", po::value(&o.sliding_window)->default_value(o.sliding_window),
      "gemma2, gemma3: sliding window of the sliding layers")(
      "topk-k", po::value(&o.topk_k)->default_value(o.topk_k), "qwen3: k of the TopK SAEs")(
      "transcoders", po::bool_switch(&transcoders),
      "also write random SAE-Lens MLP transcoders (jumprelu_skip_transcoder, width --d-sae) in "
      "OUT/transcoders/layer_L, for sweep --mlp-transcoder");
  po::variables_map vm;
  if (!parse_command("synth", "--out DIR [options]", options, {}, args, vm, ctx.comm.rank() == 0)) return 0;
  if (ctx.comm.rank() != 0) return 0;
  SAETRAJ_CHECK(arch == "gpt2" || arch == "gemma2" || arch == "gemma3" || arch == "llama" || arch == "qwen3",
                InputError, "--arch must be gpt2, gemma2, gemma3, llama or qwen3, got \"", arch, "\"");
  const auto r = arch == "gpt2"     ? synth::synth_gpt2_fixture(o)
                 : arch == "llama"  ? synth::synth_llama_fixture(o)
                 : arch == "qwen3"  ? synth::synth_qwen3_fixture(o)
                 : arch == "gemma3" ? synth::synth_gemma3_fixture(o)
                                    : synth::synth_gemma2_fixture(o);
  std::cout << "model: " << r.model_dir << "\n";
  if (arch == "gemma3") {
    std::cout << "SAEs: " << r.gemmascope_root << " (Gemma Scope 2 layout, width " << r.gemmascope_width
              << ", l0 small and big)\n";
  } else if (arch != "gemma2") {
    std::cout << "SAEs: " << r.sae_pattern << "\n";
  } else {
    std::cout << "SAEs: " << r.gemmascope_root << " (Gemma Scope layout, width " << r.gemmascope_width
              << ")\n";
  }
  if (transcoders) {
    for (int l = 0; l < o.n_layers; ++l) {
      synth::write_sae_lens_transcoder(
          o.out + "/transcoders/layer_" + std::to_string(l), "jumprelu_skip_transcoder", l,
          synth::random_raw_transcoder(o.d_model, o.d_model, o.d_sae, true, o.seed * 1000 + 17 + static_cast<uint64_t>(l)));
    }
    std::cout << "MLP transcoders: " << o.out << "/transcoders/layer_{layer}\n";
  }
  if (arch != "gemma3") std::cout << "explanations: " << r.explanations_root << "\n";  // gemma3 writes none
  return 0;
}

}  // namespace saetraj::cli
