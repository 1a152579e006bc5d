#include <iostream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/pipeline/sweep_runner.h"

namespace saetraj::cli {

int cmd_sweep(const std::vector<std::string>& args, const CommandContext& ctx) {
  pipeline::SweepOptions o;
  po::options_description options("Sweep options");
  options.add_options()
    ("model", po::value(&o.model), "Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer files)")
    ("sae", po::value(&o.saes)->composing(),
     "SAE folder per layer (SAE-Lens, Gemma Scope params.npz, Gemma Scope 2 params.safetensors, Llama Scope, "
     "sparsify): a pattern with {layer} "
     "(e.g. saes/layer_{layer}) and/or LAYER=FOLDER; repeatable")
    ("gemmascope-root", po::value(&o.gemmascope_root),
     "instead of --sae: a Gemma Scope release tree layer_L/width_W/average_l0_X/params.npz")
    ("gemmascope-width", po::value(&o.gemmascope_width)->default_value(o.gemmascope_width),
     "the width_W folder taken from --gemmascope-root (16k, 65k, ...)")
    ("gemmascope-l0", po::value(&o.gemmascope_l0)->default_value(o.gemmascope_l0),
     "target L0: the average_l0_X closest to it is taken (0: gemma-2-2b's canonical 65k L0 of the layer)")
    ("gemmascope-l0-layer", po::value(&o.gemmascope_l0_layers)->composing(),
     "LAYER=L0: that layer's target L0 instead (e.g. 3=193, as the original study took); repeatable")
    ("gemmascope2-root", po::value(&o.gemmascope2_root),
     "instead of --sae: a Gemma Scope 2 release tree (google/gemma-scope-2-*): "
     "resid_post/layer_L_width_W_l0_X/params.safetensors")
    ("gemmascope2-width", po::value(&o.gemmascope2_width)->default_value(o.gemmascope2_width),
     "the width W taken from --gemmascope2-root (16k, 65k, 262k, 1m)")
    ("gemmascope2-l0", po::value(&o.gemmascope2_l0)->default_value(o.gemmascope2_l0),
     "the sparsity taken from --gemmascope2-root: small, medium or big")
    ("gemmascope2-l0-layer", po::value(&o.gemmascope2_l0_layers)->composing(),
     "LAYER=small|medium|big: that layer's sparsity instead; repeatable")
    ("layers", po::value(&o.layers)->default_value(o.layers), "analysed layers: all, a range 0-11, or a list 0,3,5")
    ("prompt", po::value(&o.prompts)->composing(), "prompt text; repeatable")
    ("prompt-ids", po::value(&o.prompt_ids)->composing(), "a prompt as comma-separated token ids; repeatable")
    ("prompt-file", po::value(&o.prompt_file), "prompts from a .txt file (one per line) or .jsonl ({\"id\", \"text\"})")
    ("strict-input", po::bool_switch(&o.strict_input),
     "stop at the first malformed line of a .jsonl --prompt-file (default: skip it and list it under /skipped)")
    ("k", po::value(&o.k)->default_value(o.k), "top active features recorded per step")
    ("top-t", po::value(&o.top_t)->default_value(o.top_t), "graph filter: newcomers with final rank <= T")
    ("heads", po::bool_switch(&o.heads),
     "also record which attention head brought each newcomer with final rank <= T in: its pre-activation "
     "jump at the entry step split into one signed part per (query) head, the b_O part and what the "
     "normalisations leave unassigned (/heads in the file, shown in JSON graphs and HTML hover)")
    ("orders", po::value(&o.orders)->default_value(o.orders),
     "M > 0: also record, for each newcomer with final rank <= T, order-free views of its activation per "
     "source token: leave-one-out, and sampled Shapley values over M random orders with standard errors "
     "(/order in the file; at least 2)")
    ("order-seed", po::value(&o.order_seed)->default_value(o.order_seed), "seed of the --orders orders")
    ("mlp-transcoder", po::value(&o.mlp_transcoders)->composing(),
     "also decompose each analysed layer's MLP output at every position with this transcoder of the MLP "
     "(SAE-Lens transcoder folder, Gemma Scope or Gemma Scope 2 transcoder), add its terms to resid_mid one at a "
     "time, encode each partial sum with the layer's SAE and record which transcoder feature brought each "
     "newcomer in (/mlp in the file, format version 3): a pattern with {layer} and/or LAYER=FOLDER, as --sae; "
     "every analysed layer needs one; repeatable")
    ("bos", po::value(&o.bos)->default_value(o.bos),
     "prepend BOS: auto (as the SAEs were trained, else the tokenizer's default), on, off")
    ("center", po::value(&o.center)->default_value(o.center),
     "centre residual vectors before encoding: auto (SAE cfg's center_writing_weights), on, off")
    ("allow-hook-mismatch", po::bool_switch(&o.allow_hook_mismatch),
     "accept SAEs whose hook layer differs from the layer they are given to")
    ("max-tokens", po::value(&o.max_tokens)->default_value(o.max_tokens),
     "truncate prompts to this many tokens, BOS included (0: never; too long prompts are skipped)")
    ("shard", po::value(&o.shard),
     "I/N: take only prompts I, I+N, I+2N, ... of the input (job arrays; prompt ids keep their input line)")
    ("out,o", po::value(&o.out)->default_value(o.out), "output HDF5 file")
    ("overwrite", po::bool_switch(&o.overwrite), "replace an existing output file")
    ("resume", po::bool_switch(&o.resume), "continue an interrupted sweep, skipping prompts already done")
    ("chunk-rows", po::value(&o.chunk_rows)->default_value(o.chunk_rows),
     "rows encoded per matrix product (memory: chunk-rows x d_sae x 4 bytes)")
    ("method", po::value(&o.method)->default_value(o.method),
     "evolution method: auto (the cheaper by a cost model), direct (encode every partial sum), or factored "
     "(assemble pre-activations from per-source, per-head projections; exact, faster on long prompts)")
    ("no-graphs", "do not build graphs at the end")
    ("graphs-dir", po::value(&o.graphs_dir), "where graph JSON/GraphML go (default: OUT without .h5 + _graphs)")
    ("dtype", po::value(&o.dtype)->default_value(o.dtype), "compute dtype (float32)")
    ("sae-dtype", po::value(&o.sae_dtype)->default_value(o.sae_dtype),
     "storage of each SAE's W_enc: float32, or bfloat16 (half the memory; products still accumulate in float32, "
     "top-k lists change slightly, see the README)")
    ("device", po::value(&o.device)->default_value(o.device),
     "where each rank computes: cpu, or cuda (one GPU per rank: its SAEs, the model on rank 0, both methods "
     "and top-k run there; only top-k lists come back to the host)")
    ("gpu", po::value(&o.gpu)->default_value(o.gpu),
     "with --device cuda: the GPU index of this rank (-1: local rank modulo the GPUs it sees, which respects "
     "SLURM's CUDA_VISIBLE_DEVICES)")
    ("exchange", po::value(&o.exchange)->default_value(o.exchange),
     "how rank 0 sends activations to the ranks owning each layer: auto (nccl with --device cuda, else mpi), "
     "mpi (from host memory), or nccl (GPU to GPU)");
  po::variables_map vm;
  if (!parse_command("sweep", "--model DIR --sae PATTERN --prompt TEXT [options]", options, {}, args, vm,
                     ctx.comm.rank() == 0)) {
    return 0;
  }
  o.graphs = !vm.count("no-graphs");
  o.command_line = ctx.command_line;
  pipeline::install_stop_handlers();
  const auto result = pipeline::run_sweep(o, ctx.comm);
  if (ctx.comm.rank() == 0) {
    if (result.interrupted) {
      std::cerr << "saetraj: interrupted; " << result.prompts_done << "/" << result.prompts
                << " prompts are done and saved in " << result.out << ". Continue with the same command plus --resume.\n";
    } else {
      std::cout << "sweep: " << result.out << " (" << result.prompts_done << " prompt(s), " << result.skipped
                << " skipped, " << result.rows << " rows per layer)\n";
      if (!result.graphs_dir.empty()) std::cout << "graphs: " << result.graphs_dir << "\n";
    }
  }
  return result.interrupted ? 130 : 0;
}

}  // namespace saetraj::cli
