#include <iostream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/pipeline/index_runner.h"

namespace saetraj::cli {

int cmd_index(const std::vector<std::string>& args, const CommandContext& ctx) {
  pipeline::IndexOptions o;
  o.command_line = ctx.command_line;
  po::options_description options("Index options");
  options.add_options()("sweeps", po::value(&o.sweeps)->multitoken()->composing(),
                        "the sweep files to index (complete, with graph tables: run `saetraj graph` first), in order")(
      "out,o", po::value(&o.out), "the index file (HDF5, README \"Feature index\")")(
      "overwrite", "replace --out when it exists")(
      "top-t", po::value(&o.top_t)->default_value(0),
      "index the graph group /graphs_T<T> built by `saetraj graph --top-t T` (default: /graphs)")(
      "memory-mb", po::value(&o.memory_mb)->default_value(512),
      "memory for the batches of rows, per rank (the per-feature counts, prompts and tokens come on top)")(
      "batch-rows", po::value(&o.batch_rows)->default_value(0),
      "rows per batch, instead of what --memory-mb allows (for tests)")(
      "quiet", "no progress lines on stderr");
  po::positional_options_description pos;
  pos.add("sweeps", -1);
  po::variables_map vm;
  if (!parse_command("index", "SWEEP.h5 [MORE.h5 ...] --out INDEX.h5", options, pos, args, vm, ctx.comm.rank() == 0)) {
    return 0;
  }
  o.overwrite = vm.count("overwrite") > 0;
  o.progress = vm.count("quiet") == 0;
  SAETRAJ_CHECK(o.batch_rows >= 0, InputError, "saetraj index: --batch-rows must be positive, not ", o.batch_rows);
  const auto r = pipeline::build_index(o, ctx.comm);
  if (ctx.comm.rank() == 0) {
    std::cout << "indexed " << r.sources << " sweep file(s): " << r.prompts << " prompt(s), " << r.occurrences
              << " occurrence(s) of " << r.features << " (layer, feature) pair(s) into " << o.out << "\n";
  }
  return 0;
}

}  // namespace saetraj::cli
