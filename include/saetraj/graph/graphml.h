// Trajectory graphs as GraphML, for networkx, Gephi, Cytoscape and the like. Nodes are the edges'
// endpoints, with id "t<token>_l<layer>" and attributes token, layer, token_text; edges carry
// num_trajectories, best_final_position and features (the trajectories' SAE indices, space-separated,
// in order of final position; left out on 0-trajectory edges).
// With MLP vertices (the traced graph of a sweep with --mlp-transcoder), each is a node
// "mlp_t<token>_l<layer>_s<step>" with kind "mlp", token, layer, token_text, mlp_term, transcoder_feature
// (-1 unless the term is a feature), transcoder_activation (left out unless a feature), step and steps,
// and an edge from it to its vertex "t<token>_l<layer>" carrying the features it brought in as a traced
// edge carries its trajectories; every other node then has kind "vertex". Without them the document is
// what it was before MLP vertices existed.
#pragma once

#include <string>
#include <vector>

#include "saetraj/graph/trajectory_graph.h"

namespace saetraj::graph {

// `tokens` are the prompt's token strings; every edge endpoint's token must index into it (InputError
// otherwise). Token text is escaped, made valid UTF-8, and characters XML 1.0 cannot carry become U+FFFD.
// An MLP vertex whose (token, layer) is not an endpoint of `edges` is refused (InputError).
std::string graph_to_graphml(const std::vector<Edge>& edges, const std::vector<std::string>& tokens,
                             const std::vector<MlpPathVertex>& mlp_path = {});

// Throws IoError when the file cannot be written.
void write_graphml(const std::string& path, const std::vector<Edge>& edges, const std::vector<std::string>& tokens,
                   const std::vector<MlpPathVertex>& mlp_path = {});

}  // namespace saetraj::graph
