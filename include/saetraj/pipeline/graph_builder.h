// Graphs from a sweep file (SPEC 1.3-1.5): run by rank 0 at the end of a sweep and by `saetraj graph`.
// Reads the evolution of every finished prompt, writes the graph tables into the file (/graphs for the
// first T, /graphs_T<T> for further ones, each replacing an earlier build with the same T) and, per
// prompt, every per-length graph and the traced graph as JSON plus the traced graph as GraphML.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saetraj::pipeline {

struct GraphBuildOptions {
  std::vector<int> top_t = {15};
  std::string json_dir;  // default: the sweep file's path without .h5, plus "_graphs"
  bool write_json = true;
};

struct GraphBuildResult {
  std::string json_dir;
  int64_t prompts = 0;
  int64_t trajectories = 0;
  int64_t edges = 0;
  int64_t traced_edges = 0;
};

GraphBuildResult build_graphs(const std::string& sweep_path, const GraphBuildOptions& options);

std::string default_graphs_dir(const std::string& sweep_path);

}  // namespace saetraj::pipeline
