// Reading a sweep file (SPEC 3 and the version-2 additions of NOTE Format versions in sweep_file.h), and
// the additions made to a finished sweep (graph tables, explanations). Every part of saetraj that reads a
// sweep file after the sweep (graph, explain, info, merge, index, export) goes through this class, so
// that HDF5 stays inside output/: this header does not include <hdf5.h>.
//
// Opening validates the whole layout before anything is read: the format and its version (1 to 3 are
// read, newer ones refused; /mlp only in version 3), the root attributes, and the type and shape of every
// dataset against the prompt, row, layer and k counts it implies (including that the per-prompt offsets are
// the running sums of the token and row counts). A file that breaks any of these is refused with one line naming the file
// and the dataset, so callers index the arrays below without further checks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace saetraj::output {

// The root attributes.
struct SweepAttributes {
  int64_t format_version = 0;
  std::string model;
  std::string architecture;
  int64_t d_model = 0;
  int64_t n_model_layers = 0;
  std::vector<int32_t> layers;  // layer axis i <-> layers[i]
  int64_t k = 0;
  std::vector<std::string> sae_ids;
  std::vector<std::string> sae_hooks;          // empty when the file has none
  std::vector<std::string> sae_preprocessing;  // empty when the file has none
  std::string bos;                             // "" when the file has none
  bool complete = false;
  std::string created_utc;
  std::string command_line;
  std::string config_json;  // "" when the file has none
};

// /prompts/*, /tokens/* and /skipped/*.
struct SweepPrompts {
  std::vector<std::string> text;
  std::vector<std::string> id;  // "" each when the file has no /prompts/id
  std::vector<int32_t> n_tokens;
  std::vector<int64_t> token_offset;
  std::vector<int64_t> row_offset;
  std::vector<uint8_t> done;
  std::vector<int32_t> token_ids;      // [sum N]
  std::vector<std::string> token_text;  // [sum N]
  std::vector<int64_t> skipped_line;    // empty when the file has no /skipped
  std::vector<std::string> skipped_id, skipped_text, skipped_reason;
};

// /readout/*: [P, L, 5] each, row-major.
struct SweepReadout {
  std::vector<int32_t> token_ids;
  std::vector<float> probs;
  std::vector<std::string> token_text;
};

// Rows of the graph tables (SPEC 3).
struct TrajectoryRecord {
  int32_t prompt, length, layer, source_token, feature, final_position;
  bool operator==(const TrajectoryRecord&) const = default;
};
struct EdgeRecord {
  int32_t prompt, length, from_token, from_layer, to_token, to_layer, num_trajectories, best_final_position;
  bool operator==(const EdgeRecord&) const = default;
};
struct TracedEdgeRecord {
  int32_t prompt, from_token, from_layer, to_token, to_layer, num_trajectories, best_final_position;
  bool operator==(const TracedEdgeRecord&) const = default;
};

// A row of /graphs/mlp_path (sweeps with /mlp): one SAE feature that an MLP vertex of a prompt's traced graph
// brought into resid_post's top T + 1 (traced.json's metadata.mlp_path, one row per feature, in its order):
// the vertex (token, layer), the step of the layer's MLP path at that token and its step count, the term
// added (0 a transcoder feature, 1 bias, 2 skip, 3 error), the transcoder feature (-1 unless term 0), the SAE
// feature and its final position. /graphs/mlp_path_activation [rows] float32 holds the transcoder feature's
// activation (NaN unless term 0).
struct MlpPathRecord {
  int32_t prompt, token, layer, step, steps, term, transcoder_feature, feature, final_position;
  bool operator==(const MlpPathRecord&) const = default;
};

// One group of graph tables: /graphs, or /graphs_T<T> for a further T.
struct GraphTables {
  int64_t top_t = 0;
  std::vector<TrajectoryRecord> trajectories;
  std::vector<EdgeRecord> edges;
  std::vector<TracedEdgeRecord> traced_edges;
  // /graphs/trajectory_heads [trajectories, head_columns] (files with /heads); head_columns 0 when absent.
  int64_t head_columns = 0;
  std::vector<std::string> head_column_names;
  std::vector<float> trajectory_heads;
  // /graphs/trajectory_order [trajectories, 4] (files with /order); has_order false when absent.
  bool has_order = false;
  std::vector<std::string> order_column_names;
  std::vector<int32_t> trajectory_order;
  // /graphs/trajectory_order_values [trajectories, order_value_columns] (files with /order); 0 when absent.
  int64_t order_value_columns = 0;
  std::vector<std::string> order_value_column_names;
  std::vector<float> trajectory_order_values;
  // /graphs/mlp_path and /graphs/mlp_path_activation (files with /mlp); has_mlp_path false when absent.
  bool has_mlp_path = false;
  std::vector<MlpPathRecord> mlp_path;
  std::vector<float> mlp_path_activation;
};

// /mlp of one prompt (NOTE The MLP path in sweep_file.h): its queries 1..n-1 for every layer axis, row-major:
// steps [L, n-1], final_indices, final_values and activation [L, n-1, k], slots [L, n-1, k, 3].
struct MlpRecords {
  std::vector<int32_t> steps, final_indices, slots;
  std::vector<float> final_values, activation;
};

// /explanations/* and /mlp_explanations/*: one row per explained (layer, feature).
struct ExplanationRecord {
  int32_t layer = 0;
  int32_t feature = 0;
  std::string text;
  bool operator==(const ExplanationRecord&) const = default;
};

class SweepReader {
 public:
  // Opens and validates `path` (see the top of this file). `writable` opens it for the additions below.
  // Errors: FormatError or IoError, one line starting with the path.
  static SweepReader open(const std::string& path, bool writable = false);
  SweepReader(SweepReader&&) noexcept;
  SweepReader& operator=(SweepReader&&) noexcept;
  ~SweepReader();

  const std::string& path() const;
  const SweepAttributes& attributes() const;
  const SweepPrompts& prompts() const;
  int64_t n_prompts() const;
  int64_t n_layers() const;
  int64_t k() const;
  int64_t total_rows() const;     // R: rows of /evolution
  int64_t total_queries() const;  // sum over prompts of (n_tokens - 1)

  // /evolution/row_query and /evolution/row_step, [R] each.
  std::vector<int32_t> row_query() const;
  std::vector<int32_t> row_step() const;
  // Rows [row_begin, row_begin + rows) of layer axis `layer_index`: [rows, k], row-major.
  std::vector<int32_t> evolution_indices(int64_t layer_index, int64_t row_begin, int64_t rows) const;
  std::vector<float> evolution_values(int64_t layer_index, int64_t row_begin, int64_t rows) const;
  SweepReadout readout() const;

  // /heads (sweeps with --heads): slots S, heads H, the H + 3 column names, and the split of one prompt:
  // [L, n_tokens - 1, S, H + 3] (queries 1..n-1).
  bool has_heads() const;
  int64_t head_slots() const;
  int64_t heads() const;
  const std::vector<std::string>& head_column_names() const;
  std::vector<int64_t> head_query_offset() const;
  std::vector<float> head_split(int64_t prompt) const;

  // /order (sweeps with --orders): slots S, orders M, seed, and rows [row_begin, row_begin + rows) of
  // /order/values: [L, rows, 3 S].
  bool has_order() const;
  int64_t order_slots() const;
  int64_t orders() const;
  int64_t order_seed() const;
  std::vector<float> order_values(int64_t row_begin, int64_t rows) const;

  // /mlp (sweeps with --mlp-transcoder, format version 3): the transcoders' ids and hooks per layer axis, and
  // one prompt's records.
  bool has_mlp() const;
  const std::vector<std::string>& mlp_transcoder_ids() const;
  const std::vector<std::string>& mlp_transcoder_hooks() const;
  const std::vector<std::string>& mlp_transcoder_hooks_out() const;
  MlpRecords mlp(int64_t prompt) const;

  // Graph table groups present ("graphs", "graphs_T8", ...), and one of them read whole.
  std::vector<std::string> graph_groups() const;
  bool has_graphs() const;
  int64_t graph_top_t(const std::string& group = "graphs") const;  // the T a group was built with
  GraphTables graphs(const std::string& group = "graphs") const;

  bool has_explanations() const;
  std::vector<ExplanationRecord> explanations() const;
  // /mlp_explanations/* (written by `saetraj explain` for a sweep with /mlp): the explanations of the transcoder
  // features /mlp references, one row per (layer, transcoder feature); layer is the analysed layer whose MLP.
  bool has_mlp_explanations() const;
  std::vector<ExplanationRecord> mlp_explanations() const;

  // Ranged reads of one graph group's per-trajectory tables, for readers that must not hold a whole table
  // (saetraj index). graph_shape validates the group's trajectory tables (fields, types, shapes, the
  // column names) without reading their rows; the readers below return rows [begin, begin + rows):
  // trajectory_heads [rows, head_columns], trajectory_order [rows, 4], trajectory_order_values
  // [rows, order_value_columns], row-major. traced_edges reads the group's (small) traced table whole.
  struct GraphShape {
    int64_t top_t = 0;
    int64_t trajectories = 0;
    int64_t head_columns = 0;  // 0: no trajectory_heads
    std::vector<std::string> head_column_names;
    bool has_order = false;
    std::vector<std::string> order_column_names;
    int64_t order_value_columns = 0;  // 0: no trajectory_order_values
    std::vector<std::string> order_value_column_names;
  };
  GraphShape graph_shape(const std::string& group) const;
  std::vector<TrajectoryRecord> trajectory_rows(const std::string& group, int64_t begin, int64_t rows) const;
  std::vector<float> trajectory_heads_rows(const std::string& group, int64_t begin, int64_t rows) const;
  std::vector<int32_t> trajectory_order_rows(const std::string& group, int64_t begin, int64_t rows) const;
  std::vector<float> trajectory_order_values_rows(const std::string& group, int64_t begin, int64_t rows) const;
  std::vector<TracedEdgeRecord> traced_edges(const std::string& group) const;

  // Additions to a file opened writable. Each replaces an earlier group of the same name and is flushed.
  void write_graphs(const std::string& group, const GraphTables& tables);
  void write_explanations(const std::vector<ExplanationRecord>& rows);
  void write_mlp_explanations(const std::vector<ExplanationRecord>& rows);

 private:
  struct Impl;
  explicit SweepReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace saetraj::output
