#include <iostream>

#include "options.h"
#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/pipeline/graph_builder.h"

namespace saetraj::cli {

int cmd_graph(const std::vector<std::string>& args, const CommandContext& ctx) {
  std::string file;
  std::vector<int> top_t;
  pipeline::GraphBuildOptions g;
  po::options_description options("Graph options");
  options.add_options()("file", po::value(&file), "sweep HDF5 file")(
      "top-t,t", po::value(&top_t)->multitoken()->composing(),
      "T values (default 15); the first replaces /graphs, others go to /graphs_T<T>")(
      "json-dir", po::value(&g.json_dir), "where JSON/GraphML go (default: FILE without .h5 + _graphs)")(
      "no-json", "write only the HDF5 tables");
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  if (!parse_command("graph", "FILE [--top-t T ...]", options, pos, args, vm, ctx.comm.rank() == 0)) return 0;
  SAETRAJ_CHECK(!file.empty(), InputError, "saetraj graph: give the sweep file");
  if (ctx.comm.rank() != 0) return 0;
  if (!top_t.empty()) g.top_t = top_t;
  g.write_json = !vm.count("no-json");
  const auto r = pipeline::build_graphs(file, g);
  std::cout << "graphs: " << r.prompts << " prompt(s), " << r.trajectories << " trajectories, " << r.edges
            << " edges, " << r.traced_edges << " traced edges (T = " << g.top_t.front() << ") in " << file << "\n";
  if (g.write_json) std::cout << "graph files: " << r.json_dir << "\n";
  return 0;
}

}  // namespace saetraj::cli
