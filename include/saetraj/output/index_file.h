// The feature index file written by `saetraj index` (format "saetraj-index" version 1; layout in README
// "Feature index"): /prompts and /tokens of every source sweep, one row per trajectory in /occurrences
// sorted by (layer, feature), one row per (layer, feature) in /features with its aggregates, and /vocab.
//
// Life cycle, as for the sweep file: rank 0 creates the file serially with everything known before the
// rows are placed (root attributes, prompts, tokens, vocab, the (layer, feature) keys with their start,
// count and explanation, and the numeric datasets allocated at creation); then every rank opens it in
// parallel and writes its rows of /occurrences collectively (ParallelIndexFile), and, in a second opening,
// reads back rows of /occurrences and writes its rows of the /features aggregates collectively.
// This header does not include <hdf5.h>.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "saetraj/dist/communicator.h"

namespace saetraj::output {

inline constexpr const char* kIndexFormat = "saetraj-index";
inline constexpr int64_t kIndexFormatVersion = 1;
inline constexpr int kIndexTopSources = 5;

struct IndexHeader {
  std::string model, architecture;
  std::vector<int32_t> layers;
  int64_t k = 0;
  std::vector<std::string> sae_ids;
  int64_t top_t = 0;
  std::string graphs_group;
  std::vector<std::string> sources;
  std::string created_utc, command_line;
  // /prompts, /tokens, /vocab
  std::vector<int32_t> prompt_source, prompt_index, prompt_n_tokens;
  std::vector<std::string> prompt_id, prompt_text;
  std::vector<int64_t> prompt_token_offset;
  std::vector<int32_t> token_ids;
  std::vector<std::string> token_text;
  std::vector<int32_t> vocab_id;
  std::vector<std::string> vocab_text;
  // /features keys (the aggregates are written later, in parallel)
  std::vector<int32_t> feature_layer, feature_index;
  std::vector<int64_t> feature_start, feature_count;
  std::vector<std::string> feature_explanation;
  int64_t occurrences = 0;
  std::vector<std::string> head_column_names;         // empty: no /occurrences/heads
  std::vector<std::string> order_column_names;        // empty: no /occurrences/order
  std::vector<std::string> order_value_column_names;  // with order: the columns of order_values
};

// Serial, rank 0. Refuses an existing file unless `overwrite`.
void create_index_file(const std::string& path, const IndexHeader& header, bool overwrite);

// A block of /occurrences rows, column by column (heads, order and order_values row-major, empty when the
// index has none).
struct OccurrenceColumns {
  std::vector<int32_t> prompt, length, source_token, distance_back, final_position, source_id;
  std::vector<int8_t> traced;
  std::vector<float> heads;
  std::vector<int32_t> order;
  std::vector<float> order_values;
  int64_t rows() const { return static_cast<int64_t>(prompt.size()); }
};

// Rows [file_row, file_row + rows) of /occurrences.
struct OccurrenceRun {
  int64_t file_row = 0;
  int64_t rows = 0;
};

// Rows of the /features aggregates, for consecutive features.
struct FeatureAggregates {
  std::vector<int32_t> prompts;
  std::vector<int64_t> traced;
  std::vector<double> distance_mean, distance_median, final_position_mean, final_position_median;
  std::vector<int32_t> top_sources;       // [rows, 5]
  std::vector<int64_t> top_source_counts; // [rows, 5]
  std::vector<double> head_share_mean;    // [rows, H] with heads
  std::vector<double> loo_agree, shapley_agree;  // with order
  int64_t rows() const { return static_cast<int64_t>(prompts.size()); }
};

class ParallelIndexFile {
 public:
  // Collective over `comm`.
  ParallelIndexFile(const std::string& path, const dist::Communicator& comm);
  ~ParallelIndexFile();
  ParallelIndexFile(const ParallelIndexFile&) = delete;
  ParallelIndexFile& operator=(const ParallelIndexFile&) = delete;

  int64_t head_columns() const { return head_columns_; }
  bool has_order() const { return order_values_columns_ > 0; }
  int64_t order_value_columns() const { return order_values_columns_; }

  // Collective: `columns` holds the rows of `runs` one after the other, runs in ascending file order and
  // disjoint. Every rank calls it, with no runs when it has nothing to write.
  void write_occurrences(const std::vector<OccurrenceRun>& runs, const OccurrenceColumns& columns);
  // Independent: rows [begin, begin + rows) of /occurrences as written so far (by any rank, once a
  // previous opening was closed).
  OccurrenceColumns read_occurrences(int64_t begin, int64_t rows) const;
  // Collective: rows [begin, begin + a.rows()) of the /features aggregates.
  void write_features(int64_t begin, const FeatureAggregates& a);
  void close();

 private:
  std::string path_;
  const dist::Communicator& comm_;
  int64_t head_columns_ = 0, order_values_columns_ = 0, heads_ = 0;
  struct Handles;
  std::unique_ptr<Handles> h_;
};

}  // namespace saetraj::output
