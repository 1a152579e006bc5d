#include <iostream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/pipeline/merge_runner.h"

namespace saetraj::cli {

int cmd_merge(const std::vector<std::string>& args, const CommandContext& ctx) {
  pipeline::MergeOptions o;
  o.command_line = ctx.command_line;
  po::options_description options("Merge options");
  options.add_options()("shards", po::value(&o.shards)->multitoken()->composing(),
                        "the shard files of one corpus sweep (sweep --shard I/N), in any order")(
      "out,o", po::value(&o.out), "the merged sweep file")("overwrite", "replace --out when it exists");
  po::positional_options_description pos;
  pos.add("shards", -1);
  po::variables_map vm;
  if (!parse_command("merge", "SHARD.h5 ... --out CORPUS.h5", options, pos, args, vm, ctx.comm.rank() == 0)) return 0;
  o.overwrite = vm.count("overwrite") > 0;
  const auto r = pipeline::merge_shards(o, ctx.comm);
  if (ctx.comm.rank() == 0) {
    std::cout << "merged " << r.shards << " shard(s): " << r.prompts << " prompt(s), " << r.skipped
              << " skipped, in corpus order into " << o.out
              << (r.graph_prompts > 0 ? " (graphs rebuilt)" : "") << "\n";
  }
  return 0;
}

}  // namespace saetraj::cli
