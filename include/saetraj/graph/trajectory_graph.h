// Newcomers, per-length trajectory graphs and the traced cross-layer graph (SPEC 1.3-1.5). Pure
// functions over evolution tables: no tensors, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saetraj::graph {

// One (layer, length) evolution: `steps` = q+2 rows of `k` feature indices (-1 = empty slot), row-major.
struct EvolutionView {
  const int32_t* indices = nullptr;
  int steps = 0;
  int k = 0;
};

struct Trajectory {
  int source_token = 0;    // first step s where the feature appears, minus one
  int feature = 0;
  int final_position = 0;  // rank in the last step
};

// Newcomers present in the last step with final_position <= top_t, ordered by (source_token,
// final_position).
std::vector<Trajectory> find_trajectories(const EvolutionView& evolution, int top_t);

struct Edge {
  int from_token = 0, from_layer = 0, to_token = 0, to_layer = 0;
  int num_trajectories = 0;
  int best_final_position = -1;  // -1 for 0-trajectory edges
  std::vector<std::pair<int, int>> trajectories;  // (final_position, feature)
};

struct LengthGraph {
  int length = 0;  // n = q+1
  std::vector<Edge> edges;
};

// Per-length graph: `layers` are the analysed model layers in increasing order, `per_layer[i]` the
// trajectories of layers[i] at this length.
LengthGraph build_length_graph(int length, const std::vector<int>& layers,
                               const std::vector<std::vector<Trajectory>>& per_layer);

// Backward tracing over lengths (SPEC 1.5). `graphs[n]` is the graph of length n (index 0 and 1 unused,
// lengths 2..N). Returns the union of edges reached, BOS column excluded, in a deterministic order.
std::vector<Edge> trace_graph(const std::vector<LengthGraph>& graphs, int n_tokens, const std::vector<int>& layers);

}  // namespace saetraj::graph
