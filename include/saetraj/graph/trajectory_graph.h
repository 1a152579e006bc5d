// Newcomers, per-length trajectory graphs and the traced cross-layer graph (SPEC 1.3-1.5). Pure
// functions over evolution tables: no tensors, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace saetraj::graph {

// One (layer, length) evolution: `steps` = q+2 rows of `k` feature indices (-1 = empty slot), row-major.
// Row 0 is the initial list, row s >= 1 the list after source tokens 0..s-1 have been added.
struct EvolutionView {
  const int32_t* indices = nullptr;
  int steps = 0;
  int k = 0;
};

struct Trajectory {
  int source_token = 0;    // first step s >= 1 where the feature appears, minus one
  int feature = 0;         // SAE feature index
  int final_position = 0;  // 0-based slot of the feature in the last step
};

bool operator==(const Trajectory& a, const Trajectory& b);

// Newcomers (features absent from step 0 that appear in a later step) present in the last step with
// final_position <= top_t, ordered by (source_token, final_position). A feature that leaves and returns
// keeps its first appearance. Throws InputError for a malformed view or top_t < 0, FormatError for an
// index below -1 or a feature listed twice in one step.
std::vector<Trajectory> find_trajectories(const EvolutionView& evolution, int top_t);

// An edge between vertices (token, layer); layers are model layer numbers, not analysed-layer indices.
struct Edge {
  int from_token = 0, from_layer = 0, to_token = 0, to_layer = 0;
  int num_trajectories = 0;
  // Smallest final position among the trajectories; -1 on 0-trajectory (spine and vertical) edges, so
  // that "no trajectory" can never be mistaken for the best real rank 0.
  int best_final_position = -1;
  std::vector<std::pair<int, int>> trajectories;  // (final_position, feature), increasing final_position
};

bool operator==(const Edge& a, const Edge& b);

// One MLP vertex of the traced graph (sweep --mlp-transcoder; an entry of traced.json's metadata.mlp_path):
// at vertex (token, layer), the term that step `step` of the layer's MLP path added and the SAE features it
// brought into resid_post's top T + 1.
struct MlpPathVertex {
  int token = 0, layer = 0, step = 0, steps = 0;
  std::string term;                           // "feature", "bias", "skip" or "error"
  int transcoder_feature = -1;                // term "feature": the transcoder feature; else -1
  double transcoder_activation = 0.0;         // term "feature": its activation
  std::vector<std::pair<int, int>> features;  // (final position, SAE feature), increasing final position
};

struct LengthGraph {
  int length = 0;  // n = q+1
  std::vector<Edge> edges;
};

// Per-length graph (SPEC 1.4): `layers` are the analysed model layers in strictly increasing order,
// `per_layer[i]` the trajectories of layers[i] at this length (any order; source tokens in 0..n-1).
// For each layer but the first, with p the analysed layer before it: the spine edge (0,p)->(0,l), one
// edge (j,p)->(n-1,l) per source token j with trajectories (increasing j), then the vertical edge
// (n-1,p)->(n-1,l) unless a trajectory edge already leaves token n-1. The first analysed
// layer makes no edges. Throws InputError on inconsistent arguments.
LengthGraph build_length_graph(int length, const std::vector<int>& layers,
                               const std::vector<std::vector<Trajectory>>& per_layer);

// Backward tracing over lengths (SPEC 1.5). `graphs[n]` is the graph of length n for n = 2..n_tokens
// (entries 0 and 1 are ignored). Starts from every edge of graphs[n_tokens] whose source token is not 0;
// each newly reached source vertex (t,l) with t > 0 and l not the first analysed layer pulls in every
// edge of graphs[t+1] whose target is (t,l) and whose source token is not 0. Returns the union of those
// edges, each once, sorted by (to_layer, to_token, from_layer, from_token). The BOS column (token 0) never
// appears: edges leaving it are skipped and every kept edge ends at a token t >= 1. Throws InputError
// when a graph is missing or has the wrong length.
std::vector<Edge> trace_graph(const std::vector<LengthGraph>& graphs, int n_tokens,
                              const std::vector<int>& layers);

}  // namespace saetraj::graph
