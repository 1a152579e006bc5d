// Trajectory graphs as JSON, in the shape the original research code wrote (SPEC 3): one document per
// prompt length, and the traced graph in the same shape with prompt_length = N.
//
//   {"prompt_length": n, "tokens": [first n token strings], "metadata": {free-form},
//    "edges": [{"from": [token, layer], "to": [token, layer], "num_trajectories": m,
//               "best_final_position": b, "all_trajectories": [{"final_position": r, "sae_index": f}]}]}
//
// Layers are model layer numbers. A 0-trajectory edge carries best_final_position 0 and an empty
// all_trajectories list, exactly as the original code wrote it, so its plotting code reads these files
// unchanged; in memory and in the HDF5 tables it is -1 (Edge), and the reader maps 0 (or the -1 that
// saetraj wrote before) back to it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "saetraj/graph/trajectory_graph.h"

namespace saetraj::graph {

// Extra members of one all_trajectories entry (a JSON object, or null for none), given the edge, the
// entry's final position and feature: the head split of a sweep made with --heads ("heads").
using TrajectoryExtras = std::function<nlohmann::json(const Edge&, int final_position, int feature)>;

struct GraphDocument {
  int prompt_length = 0;                               // n for a per-length graph, N for the traced one
  std::vector<std::string> tokens;                     // exactly prompt_length token strings
  nlohmann::json metadata = nlohmann::json::object();  // layers, top_t, model, SAE ids, ...
  std::vector<Edge> edges;
  TrajectoryExtras extras;  // optional; written only, never read back
};

nlohmann::json graph_to_json(const GraphDocument& doc);
// `source` names the file (or other origin) in FormatError messages.
GraphDocument graph_from_json(const nlohmann::json& json, const std::string& source);

// Writes UTF-8 JSON (invalid UTF-8 in token strings becomes U+FFFD). Throws IoError when the file cannot
// be written.
void write_graph_json(const std::string& path, const GraphDocument& doc);
// Throws IoError when the file cannot be read, FormatError when it is not a graph document.
GraphDocument read_graph_json(const std::string& path);

}  // namespace saetraj::graph
