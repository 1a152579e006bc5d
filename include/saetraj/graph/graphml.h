// Trajectory graphs as GraphML, for networkx, Gephi, Cytoscape and the like. Nodes are the edges'
// endpoints, with id "t<token>_l<layer>" and attributes token, layer, token_text; edges carry
// num_trajectories, best_final_position and features (the trajectories' SAE indices, space-separated,
// in order of final position; left out on 0-trajectory edges).
#pragma once

#include <string>
#include <vector>

#include "saetraj/graph/trajectory_graph.h"

namespace saetraj::graph {

// `tokens` are the prompt's token strings; every edge endpoint's token must index into it (InputError
// otherwise). Token text is escaped, made valid UTF-8, and characters XML 1.0 cannot carry become U+FFFD.
std::string graph_to_graphml(const std::vector<Edge>& edges, const std::vector<std::string>& tokens);

// Throws IoError when the file cannot be written.
void write_graphml(const std::string& path, const std::vector<Edge>& edges,
                   const std::vector<std::string>& tokens);

}  // namespace saetraj::graph
