#include "saetraj/graph/trajectory_graph.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include "saetraj/core/error.h"

namespace saetraj::graph {

bool operator==(const Trajectory& a, const Trajectory& b) {
  return a.source_token == b.source_token && a.feature == b.feature && a.final_position == b.final_position;
}

bool operator==(const Edge& a, const Edge& b) {
  return a.from_token == b.from_token && a.from_layer == b.from_layer && a.to_token == b.to_token &&
         a.to_layer == b.to_layer && a.num_trajectories == b.num_trajectories &&
         a.best_final_position == b.best_final_position && a.trajectories == b.trajectories;
}

namespace {

// A top-k list holds each feature at most once and pads with -1; anything else means the table was
// corrupted on the way here, and ranks or first appearances would silently be wrong.
void check_row(const int32_t* row, int k, int step) {
  std::vector<int32_t> seen;
  seen.reserve(static_cast<size_t>(k));
  for (int slot = 0; slot < k; ++slot) {
    SAETRAJ_CHECK(row[slot] >= -1, FormatError, "evolution step ", step, " slot ", slot,
                  ": expected a feature index >= 0 or -1 (empty slot) but found ", row[slot]);
    if (row[slot] >= 0) seen.push_back(row[slot]);
  }
  std::sort(seen.begin(), seen.end());
  const auto dup = std::adjacent_find(seen.begin(), seen.end());
  SAETRAJ_CHECK(dup == seen.end(), FormatError, "evolution step ", step, " lists feature ", *dup,
                " more than once; expected each feature at most once per step");
}

void check_layers(const std::vector<int>& layers) {
  SAETRAJ_CHECK(!layers.empty(), InputError, "expected at least one analysed layer but got none");
  for (size_t i = 0; i < layers.size(); ++i) {
    SAETRAJ_CHECK(layers[i] >= 0, InputError, "analysed layer ", layers[i], " is negative");
    SAETRAJ_CHECK(i == 0 || layers[i - 1] < layers[i], InputError,
                  "analysed layers must be strictly increasing but ", layers[i - 1], " is followed by ",
                  layers[i]);
  }
}

Edge zero_edge(int from_token, int from_layer, int to_token, int to_layer) {
  Edge e;
  e.from_token = from_token;
  e.from_layer = from_layer;
  e.to_token = to_token;
  e.to_layer = to_layer;
  return e;
}

bool by_source_then_rank(const Trajectory& a, const Trajectory& b) {
  return std::tie(a.source_token, a.final_position) < std::tie(b.source_token, b.final_position);
}

}  // namespace

std::vector<Trajectory> find_trajectories(const EvolutionView& evolution, int top_t) {
  SAETRAJ_CHECK(evolution.steps >= 2, InputError,
                "an evolution table needs at least 2 steps (initial and after token 0) but has ",
                evolution.steps);
  SAETRAJ_CHECK(evolution.k >= 0, InputError, "evolution width k must be >= 0 but is ", evolution.k);
  SAETRAJ_CHECK(evolution.indices != nullptr || evolution.k == 0, InputError, "evolution table of ",
                evolution.steps, " x ", evolution.k, " has no data");
  SAETRAJ_CHECK(top_t >= 0, InputError, "the final-rank filter T must be >= 0 but is ", top_t);

  const int k = evolution.k;
  // Step of each feature's first appearance; step 0 marks features present from the start.
  std::unordered_map<int32_t, int> first_step;
  for (int s = 0; s < evolution.steps; ++s) {
    const int32_t* row = evolution.indices + static_cast<size_t>(s) * static_cast<size_t>(k);
    check_row(row, k, s);
    for (int slot = 0; slot < k; ++slot) {
      if (row[slot] >= 0) first_step.emplace(row[slot], s);
    }
  }

  std::vector<Trajectory> out;
  const int32_t* last = evolution.indices + static_cast<size_t>(evolution.steps - 1) * static_cast<size_t>(k);
  const int ranks = std::min(k, top_t + 1);
  for (int rank = 0; rank < ranks; ++rank) {
    if (last[rank] < 0) continue;
    const int s = first_step.at(last[rank]);
    if (s >= 1) out.push_back({s - 1, last[rank], rank});
  }
  std::sort(out.begin(), out.end(), by_source_then_rank);
  return out;
}

LengthGraph build_length_graph(int length, const std::vector<int>& layers,
                               const std::vector<std::vector<Trajectory>>& per_layer) {
  SAETRAJ_CHECK(length >= 2, InputError, "a per-length graph needs length >= 2 but got ", length);
  check_layers(layers);
  SAETRAJ_CHECK(per_layer.size() == layers.size(), InputError, "expected trajectories for ", layers.size(),
                " analysed layers but got ", per_layer.size());
  const int q = length - 1;
  for (size_t i = 0; i < layers.size(); ++i) {
    for (const Trajectory& t : per_layer[i]) {
      SAETRAJ_CHECK(t.source_token >= 0 && t.source_token <= q, InputError, "layer ", layers[i], ", length ",
                    length, ": trajectory of feature ", t.feature, " has source token ", t.source_token,
                    "; expected 0..", q);
      SAETRAJ_CHECK(t.final_position >= 0 && t.feature >= 0, InputError, "layer ", layers[i], ", length ",
                    length, ": trajectory has feature ", t.feature, " and final position ", t.final_position,
                    "; expected both >= 0");
    }
  }

  LengthGraph graph;
  graph.length = length;
  for (size_t i = 1; i < layers.size(); ++i) {
    const int p = layers[i - 1], l = layers[i];
    graph.edges.push_back(zero_edge(0, p, 0, l));

    std::vector<Trajectory> sorted = per_layer[i];
    std::sort(sorted.begin(), sorted.end(), by_source_then_rank);
    bool last_token_has_edge = false;
    for (size_t a = 0; a < sorted.size();) {
      size_t b = a;
      while (b < sorted.size() && sorted[b].source_token == sorted[a].source_token) ++b;
      Edge e = zero_edge(sorted[a].source_token, p, q, l);
      e.num_trajectories = static_cast<int>(b - a);
      e.best_final_position = sorted[a].final_position;  // sorted by rank within a source token
      for (size_t c = a; c < b; ++c) e.trajectories.emplace_back(sorted[c].final_position, sorted[c].feature);
      last_token_has_edge = last_token_has_edge || e.from_token == q;
      graph.edges.push_back(std::move(e));
      a = b;
    }
    if (!last_token_has_edge) graph.edges.push_back(zero_edge(q, p, q, l));
  }
  return graph;
}

std::vector<Edge> trace_graph(const std::vector<LengthGraph>& graphs, int n_tokens,
                              const std::vector<int>& layers) {
  check_layers(layers);
  SAETRAJ_CHECK(n_tokens >= 2, InputError, "tracing needs a prompt of at least 2 tokens but got ", n_tokens);
  SAETRAJ_CHECK(graphs.size() > static_cast<size_t>(n_tokens), InputError, "tracing a prompt of ", n_tokens,
                " tokens needs graphs of lengths 2..", n_tokens, " but got ", graphs.size(),
                " entries (indices 0..", static_cast<int>(graphs.size()) - 1, ")");
  for (int n = 2; n <= n_tokens; ++n) {
    SAETRAJ_CHECK(graphs[n].length == n, InputError, "graphs[", n, "] should be the graph of length ", n,
                  " but has length ", graphs[n].length);
    for (const Edge& e : graphs[n].edges) {
      SAETRAJ_CHECK(e.from_token >= 0 && e.from_token < n && e.to_token >= 0 && e.to_token < n, InputError,
                    "graph of length ", n, " has an edge (", e.from_token, ", ", e.from_layer, ") -> (",
                    e.to_token, ", ", e.to_layer, "); expected tokens 0..", n - 1);
    }
  }

  // Edges are keyed by their endpoints: outside the spine (never kept: it leaves token 0) an edge's
  // target token t fixes the length t+1 it comes from, so equal endpoints mean the same edge.
  using Key = std::tuple<int, int, int, int>;  // to_layer, to_token, from_layer, from_token
  std::map<Key, const Edge*> kept;
  std::set<std::pair<int, int>> reached;  // (token, layer)
  std::vector<std::pair<int, int>> frontier;

  auto take = [&](const Edge& e) {
    if (e.from_token == 0) return;
    kept.emplace(Key{e.to_layer, e.to_token, e.from_layer, e.from_token}, &e);
    if (reached.insert({e.from_token, e.from_layer}).second)
      frontier.emplace_back(e.from_token, e.from_layer);
  };

  for (const Edge& e : graphs[n_tokens].edges) take(e);
  while (!frontier.empty()) {
    const auto [t, l] = frontier.back();
    frontier.pop_back();
    if (l == layers.front()) continue;  // t >= 1: edges leaving token 0 are never taken
    for (const Edge& e : graphs[t + 1].edges) {
      if (e.to_token == t && e.to_layer == l) take(e);
    }
  }

  std::vector<Edge> out;
  out.reserve(kept.size());
  for (const auto& entry : kept) out.push_back(*entry.second);
  return out;
}

}  // namespace saetraj::graph
