// `saetraj index`: a feature index over one or more sweep files with graph tables (README "Feature index").
// Every occurrence of a (layer, feature) as a trajectory, sorted by (layer, feature) with each feature's
// rows in input order, and per-feature aggregates. Ranks split the input rows; memory is bounded by
// IndexOptions::memory_mb apart from what the README lists.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "saetraj/dist/communicator.h"
#include "saetraj/output/index_file.h"

namespace saetraj::pipeline {

struct IndexOptions {
  std::vector<std::string> sweeps;
  std::string out;
  bool overwrite = false;
  int64_t top_t = 0;        // 0: the group /graphs; else /graphs_T<top_t>
  int64_t memory_mb = 512;  // bound on the row batches (see README for what else is held)
  int64_t batch_rows = 0;   // > 0: rows per batch, overriding memory_mb (tests)
  bool progress = true;     // progress lines on stderr (rank 0) for long inputs
  std::string command_line;
};

struct IndexResult {
  int64_t sources = 0, prompts = 0, occurrences = 0, features = 0;
  int64_t batch_rows = 0;  // rows per batch used
};

// Collective over `comm`. Refuses, with one line naming the file and the field: a file that is not a sweep
// file, an incomplete one, one without the chosen graph group, one that differs from the first in model,
// architecture, layers, k, sae_ids or the group's top_t, the same file twice, --out equal to an input,
// and an existing --out without `overwrite`.
IndexResult build_index(const IndexOptions& options, const dist::Communicator& comm);

// The aggregates of one feature, fed its occurrences in /occurrences order (exposed for the unit tests).
// heads: H (head columns minus jump, bias, unassigned), 0 without heads; jump_column: the column of
// "jump" in a heads row. loo_column / shapley_column: the columns of loo_agrees / shapley_agrees in an
// order row, -1 without order.
class FeatureAccumulator {
 public:
  FeatureAccumulator(int64_t n_prompts, int64_t heads, int jump_column, int loo_column, int shapley_column);
  void add(int32_t prompt, int32_t distance_back, int32_t final_position, int32_t source_id, bool traced,
           const float* heads_row, const int32_t* order_row);
  // Appends the feature's row to `out` and starts the next feature.
  void finish(output::FeatureAggregates& out);

 private:
  static double median(const std::vector<int64_t>& histogram, int64_t n);
  int64_t heads_;
  int jump_column_, loo_column_, shapley_column_;
  int64_t epoch_ = 0;
  std::vector<int64_t> prompt_epoch_;
  int64_t count_ = 0, prompts_ = 0, traced_ = 0;
  double distance_sum_ = 0, final_sum_ = 0;
  std::vector<int64_t> distance_histogram_, final_histogram_;
  std::unordered_map<int32_t, int64_t> source_counts_;
  std::vector<double> share_sum_;
  int64_t share_count_ = 0;
  int64_t loo_yes_ = 0, loo_known_ = 0, shapley_yes_ = 0, shapley_known_ = 0;
};

}  // namespace saetraj::pipeline
