#include "saetraj/pipeline/graph_builder.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <iostream>

#include "saetraj/core/error.h"
#include "saetraj/graph/export_writer.h"
#include "saetraj/graph/graph_json.h"
#include "saetraj/graph/graphml.h"
#include "saetraj/graph/trajectory_graph.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/output/sweep_file_h5.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::pipeline {

using output::h5_check_status;
using output::h5_dataset;
using output::h5_space;
using output::H5Handle;

namespace {

struct TrajectoryRow {
  int32_t prompt, length, layer, source_token, feature, final_position;
};
struct EdgeRow {
  int32_t prompt, length, from_token, from_layer, to_token, to_layer, num_trajectories, best_final_position;
};
struct TracedRow {
  int32_t prompt, from_token, from_layer, to_token, to_layer, num_trajectories, best_final_position;
};

#define SAETRAJ_FIELD(type, row, name) \
  H5Tinsert(type, #name, HOFFSET(row, name), H5T_NATIVE_INT32)

H5Handle trajectory_type() {
  H5Handle t = output::h5_type(H5Tcreate(H5T_COMPOUND, sizeof(TrajectoryRow)), "trajectory table type");
  SAETRAJ_FIELD(t, TrajectoryRow, prompt);
  SAETRAJ_FIELD(t, TrajectoryRow, length);
  SAETRAJ_FIELD(t, TrajectoryRow, layer);
  SAETRAJ_FIELD(t, TrajectoryRow, source_token);
  SAETRAJ_FIELD(t, TrajectoryRow, feature);
  SAETRAJ_FIELD(t, TrajectoryRow, final_position);
  return t;
}

H5Handle edge_type() {
  H5Handle t = output::h5_type(H5Tcreate(H5T_COMPOUND, sizeof(EdgeRow)), "edge table type");
  SAETRAJ_FIELD(t, EdgeRow, prompt);
  SAETRAJ_FIELD(t, EdgeRow, length);
  SAETRAJ_FIELD(t, EdgeRow, from_token);
  SAETRAJ_FIELD(t, EdgeRow, from_layer);
  SAETRAJ_FIELD(t, EdgeRow, to_token);
  SAETRAJ_FIELD(t, EdgeRow, to_layer);
  SAETRAJ_FIELD(t, EdgeRow, num_trajectories);
  SAETRAJ_FIELD(t, EdgeRow, best_final_position);
  return t;
}

H5Handle traced_type() {
  H5Handle t = output::h5_type(H5Tcreate(H5T_COMPOUND, sizeof(TracedRow)), "traced edge table type");
  SAETRAJ_FIELD(t, TracedRow, prompt);
  SAETRAJ_FIELD(t, TracedRow, from_token);
  SAETRAJ_FIELD(t, TracedRow, from_layer);
  SAETRAJ_FIELD(t, TracedRow, to_token);
  SAETRAJ_FIELD(t, TracedRow, to_layer);
  SAETRAJ_FIELD(t, TracedRow, num_trajectories);
  SAETRAJ_FIELD(t, TracedRow, best_final_position);
  return t;
}
#undef SAETRAJ_FIELD

template <typename Row>
void write_table(hid_t group, const std::string& name, hid_t type, const std::vector<Row>& rows) {
  const hsize_t n = rows.size();
  const auto space = h5_space(H5Screate_simple(1, &n, nullptr), name);
  const auto ds = h5_dataset(H5Dcreate2(group, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), name);
  if (n) h5_check_status(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()), name);
}

// Rows [row_begin, row_begin + rows) of layer axis i: [rows, k].
std::vector<int32_t> read_evolution(hid_t indices, int layer_index, int64_t row_begin, int64_t rows, int64_t k) {
  std::vector<int32_t> out(rows * k);
  const auto fspace = h5_space(H5Dget_space(indices), "evolution/indices");
  const hsize_t start[3] = {static_cast<hsize_t>(layer_index), static_cast<hsize_t>(row_begin), 0};
  const hsize_t count[3] = {1, static_cast<hsize_t>(rows), static_cast<hsize_t>(k)};
  h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr), "evolution/indices");
  const hsize_t n = rows * k;
  const auto mspace = h5_space(H5Screate_simple(1, &n, nullptr), "evolution/indices");
  h5_check_status(H5Dread(indices, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, out.data()), "reading evolution/indices");
  return out;
}

// The head split of a sweep made with --heads (/heads; NOTE Format versions in output/sweep_file.h), one
// prompt at a time: split(i, q, slot) is the row of layer axis i, query q and final position `slot`, or
// nullptr when the file has none for that slot (no /heads, or a slot beyond the sweep's top_t).
class HeadSplits {
 public:
  explicit HeadSplits(hid_t file) {
    if (!output::link_exists(file, "heads")) return;
    const auto group = output::h5_group(H5Gopen2(file, "heads", H5P_DEFAULT), "/heads");
    slots_ = output::read_attr_int(group, "slots");
    columns_ = output::read_attr_int(group, "heads") + 3;
    column_names_ = output::read_attr_strings(group, "columns");
    query_offset_ = output::read_vector<int64_t>(file, "heads/query_offset");
    dataset_ = h5_dataset(H5Dopen2(file, "heads/split", H5P_DEFAULT), "heads/split");
  }
  bool present() const { return slots_ > 0; }
  int64_t columns() const { return columns_; }
  const std::vector<std::string>& column_names() const { return column_names_; }

  void load_prompt(size_t prompt, int n_tokens, size_t n_layers) {
    if (!present()) return;
    queries_ = n_tokens - 1;
    block_.assign(n_layers * queries_ * slots_ * columns_, std::numeric_limits<float>::quiet_NaN());
    if (queries_ <= 0) return;
    const auto fspace = h5_space(H5Dget_space(dataset_), "heads/split");
    const hsize_t start[4] = {0, static_cast<hsize_t>(query_offset_.at(prompt)), 0, 0};
    const hsize_t count[4] = {n_layers, static_cast<hsize_t>(queries_), static_cast<hsize_t>(slots_),
                              static_cast<hsize_t>(columns_)};
    h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr), "heads/split");
    const hsize_t n = block_.size();
    const auto mspace = h5_space(H5Screate_simple(1, &n, nullptr), "heads/split");
    h5_check_status(H5Dread(dataset_, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, block_.data()),
                    "reading heads/split");
  }
  const float* split(size_t layer_index, int q, int slot) const {
    if (!present() || slot >= slots_ || q < 1 || q > queries_) return nullptr;
    return block_.data() + ((layer_index * queries_ + (q - 1)) * slots_ + slot) * columns_;
  }
  // The JSON members of one trajectory: {"heads": {jump, bias, unassigned, values, shares}}; shares are
  // values / jump (null when the jump is 0).
  nlohmann::json json_of(const float* row) const {
    if (row == nullptr || std::isnan(row[0])) return nullptr;
    nlohmann::json values = nlohmann::json::array(), shares = nlohmann::json::array();
    for (int64_t h = 3; h < columns_; ++h) {
      values.push_back(row[h]);
      shares.push_back(row[0] != 0.0f ? nlohmann::json(row[h] / row[0]) : nlohmann::json(nullptr));
    }
    return {{"heads", {{"jump", row[0]}, {"bias", row[1]}, {"unassigned", row[2]}, {"values", values},
                       {"shares", shares}}}};
  }

 private:
  int64_t slots_ = 0, columns_ = 0, queries_ = 0;
  std::vector<std::string> column_names_;
  std::vector<int64_t> query_offset_;
  H5Handle dataset_;
  std::vector<float> block_;
};

// The order-free views of a sweep made with --orders (/order/values), one prompt at a time, reduced per
// trajectory to: the source token with the largest leave-one-out drop (activation with every token minus
// without it), the one with the largest Shapley value (ties: the lower token), and whether each is the
// trajectory's prompt-order source token (1/0); -1 everywhere when the file has none for it.
class OrderViews {
 public:
  explicit OrderViews(hid_t file) {
    if (!output::link_exists(file, "order")) return;
    slots_ = output::read_attr_int(output::h5_group(H5Gopen2(file, "order", H5P_DEFAULT), "/order"), "slots");
    dataset_ = h5_dataset(H5Dopen2(file, "order/values", H5P_DEFAULT), "order/values");
  }
  bool present() const { return slots_ > 0; }
  void load_prompt(int64_t row_begin, int64_t rows, size_t n_layers) {
    if (!present()) return;
    rows_ = rows;
    block_.assign(n_layers * rows * 3 * slots_, 0.0f);
    if (rows == 0) return;
    const auto fspace = h5_space(H5Dget_space(dataset_), "order/values");
    const hsize_t start[3] = {0, static_cast<hsize_t>(row_begin), 0};
    const hsize_t count[3] = {n_layers, static_cast<hsize_t>(rows), static_cast<hsize_t>(3 * slots_)};
    h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr), "order/values");
    const hsize_t n = block_.size();
    const auto mspace = h5_space(H5Screate_simple(1, &n, nullptr), "order/values");
    h5_check_status(H5Dread(dataset_, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, block_.data()),
                    "reading order/values");
  }
  std::array<int32_t, 4> summary(size_t layer_index, int q, int slot, int source_token) const {
    std::array<int32_t, 4> out = {-1, -1, -1, -1};
    if (!present() || slot >= slots_) return out;
    const int64_t width = 3 * slots_;
    const float* base = block_.data() + (layer_index * rows_ + sweep::row_of_query(q)) * width + 3 * slot;
    if (std::isnan(base[0])) return out;
    float best_drop = -std::numeric_limits<float>::infinity(), best_shapley = best_drop;
    for (int j = 0; j <= q; ++j) {
      const float* cell = base + (j + 1) * width;
      if (base[0] - cell[0] > best_drop) best_drop = base[0] - cell[0], out[0] = j;
      if (cell[1] > best_shapley) best_shapley = cell[1], out[1] = j;
    }
    out[2] = out[0] == source_token, out[3] = out[1] == source_token;
    return out;
  }
  // Values behind the summary, as /graphs/trajectory_order_values' columns (value_column_names); NaN
  // everywhere when the file has none for the trajectory.
  static constexpr int64_t kValueColumns = 6;
  static std::vector<std::string> value_column_names() {
    return {"activation", "without_source", "shapley_source", "shapley_source_se", "shapley_largest",
            "shapley_largest_se"};
  }
  std::array<float, kValueColumns> values(size_t layer_index, int q, int slot, int source_token) const {
    std::array<float, kValueColumns> out;
    out.fill(std::numeric_limits<float>::quiet_NaN());
    const auto s = summary(layer_index, q, slot, source_token);
    if (s[0] < 0) return out;
    const int64_t width = 3 * slots_;
    const float* base = block_.data() + (layer_index * rows_ + sweep::row_of_query(q)) * width + 3 * slot;
    const float* source = base + (source_token + 1) * width;
    const float* largest = base + (s[1] + 1) * width;
    out = {base[0], source[0], source[1], source[2], largest[1], largest[2]};
    return out;
  }
  // The JSON members of one trajectory: {"order": {...}}, or null when the file has none for it.
  nlohmann::json json_of(size_t layer_index, int q, int slot, int source_token) const {
    const auto s = summary(layer_index, q, slot, source_token);
    if (s[0] < 0) return nullptr;
    const auto v = values(layer_index, q, slot, source_token);
    return {{"order",
             {{"activation", v[0]},
              {"without_source", v[1]},
              {"vanishes_without_source", v[1] == 0.0f},
              {"loo_largest", s[0]},
              {"loo_agrees", s[2] == 1},
              {"shapley_source", {{"value", v[2]}, {"se", v[3]}}},
              {"shapley_largest", {{"token", s[1]}, {"value", v[4]}, {"se", v[5]}}},
              {"shapley_agrees", s[3] == 1}}}};
  }

 private:
  int64_t slots_ = 0, rows_ = 0;
  H5Handle dataset_;
  std::vector<float> block_;
};

std::string two_digits(int64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*lld", width, static_cast<long long>(v));
  return buf;
}

}  // namespace

std::string default_graphs_dir(const std::string& sweep_path) {
  std::filesystem::path p(sweep_path);
  return (p.parent_path() / (p.stem().string() + "_graphs")).string();
}

GraphBuildResult build_graphs(const std::string& sweep_path, const GraphBuildOptions& options) {
  SAETRAJ_CHECK(!options.top_t.empty(), InputError, "no --top-t value given");
  for (int t : options.top_t) SAETRAJ_CHECK(t >= 0, InputError, "--top-t must be >= 0, got ", t);
  GraphBuildResult result;
  result.json_dir = options.json_dir.empty() ? default_graphs_dir(sweep_path) : options.json_dir;

  H5Handle file = output::open_sweep_file(sweep_path, true, "give a sweep file written by saetraj sweep");
  const auto layers32 = output::read_attr_ints(file, "layers");
  const std::vector<int> layers(layers32.begin(), layers32.end());
  const int64_t k = output::read_attr_int(file, "k");
  const std::string model = output::read_attr_string(file, "model");
  const auto sae_ids = output::read_attr_strings(file, "sae_ids");
  const auto n_tokens = output::read_vector<int32_t>(file, "prompts/n_tokens");
  const auto token_offset = output::read_vector<int64_t>(file, "prompts/token_offset");
  const auto row_offset = output::read_vector<int64_t>(file, "prompts/row_offset");
  const auto done = output::read_vector<uint8_t>(file, "prompts/done");
  const auto texts = output::read_strings(file, "prompts/text");
  const auto token_text = output::read_strings(file, "tokens/text");
  const auto token_ids = output::read_vector<int32_t>(file, "tokens/ids");
  const int64_t n_model_layers = output::read_attr_int(file, "n_model_layers");
  const auto readout_ids = output::read_vector<int32_t>(file, "readout/token_ids");
  const auto readout_probs = output::read_vector<float>(file, "readout/probs");
  const auto readout_text = output::read_strings(file, "readout/token_text");
  const auto indices = h5_dataset(H5Dopen2(file, "evolution/indices", H5P_DEFAULT), "evolution/indices");
  HeadSplits heads(file);
  OrderViews order(file);
  std::map<std::pair<int, int>, std::string> explanations;  // (layer, feature) -> text, after `saetraj explain`
  if (output::link_exists(file, "explanations")) {
    const auto e_layer = output::read_vector<int32_t>(file, "explanations/layer");
    const auto e_feature = output::read_vector<int32_t>(file, "explanations/feature");
    const auto e_text = output::read_strings(file, "explanations/text");
    SAETRAJ_CHECK(e_layer.size() == e_feature.size() && e_feature.size() == e_text.size(), FormatError, sweep_path,
                  ": /explanations/layer, /explanations/feature and /explanations/text have ", e_layer.size(), ", ",
                  e_feature.size(), " and ", e_text.size(), " entries");
    for (size_t i = 0; i < e_text.size(); ++i) {
      if (!e_text[i].empty()) explanations[{e_layer[i], e_feature[i]}] = e_text[i];
    }
  }
  std::map<int, size_t> layer_index;
  for (size_t i = 0; i < layers.size(); ++i) layer_index[layers[i]] = i;

  for (size_t t_index = 0; t_index < options.top_t.size(); ++t_index) {
    const int top_t = options.top_t[t_index];
    const std::string group_name = t_index == 0 ? "graphs" : "graphs_T" + std::to_string(top_t);
    std::vector<TrajectoryRow> trajectory_rows;
    std::vector<EdgeRow> edge_rows;
    std::vector<TracedRow> traced_rows;
    std::vector<float> trajectory_heads;  // [rows of trajectory_rows, columns] when the file has /heads
    std::vector<int32_t> trajectory_order;  // [rows of trajectory_rows, 4] when the file has /order
    std::optional<graph::ExportWriter> exports;  // trajectories.csv and attribution_graphs/ (graph/export_writer.h)
    if (options.write_json) {
      graph::ExportSettings settings{result.json_dir + "/T" + std::to_string(top_t),
                                     std::filesystem::path(sweep_path).stem().string(), top_t, layers,
                                     graph::neuronpedia_scan(sae_ids, layers,
                                                             std::filesystem::path(model).filename().string()),
                                     {{"generator", {{"name", "saetraj"}}}, {"sae_ids", sae_ids}, {"k", k},
                                      {"model", model}},
                                     {}, {}};
      if (heads.present()) {
        for (auto c : heads.column_names()) {
          std::replace(c.begin(), c.end(), ' ', '_');  // "head 0" -> heads_head_0
          settings.extra_columns.push_back("heads_" + c);
        }
      }
      if (order.present()) {
        for (const char* c : {"loo_source", "shapley_source", "loo_agrees", "shapley_agrees"}) {
          settings.extra_columns.push_back(std::string("order_") + c);
        }
      }
      settings.explanations = explanations;
      exports.emplace(std::move(settings));
    }
    std::vector<float> trajectory_order_values;  // [rows of trajectory_rows, OrderViews::kValueColumns] likewise

    for (size_t p = 0; p < n_tokens.size(); ++p) {
      if (!done[p]) continue;
      const int n = n_tokens[p];
      const size_t first_row = trajectory_rows.size();
      heads.load_prompt(p, n, layers.size());
      order.load_prompt(row_offset[p], sweep::rows_of_prompt(n), layers.size());
      // per_length[n][i]: trajectories of layers[i] at length n.
      std::vector<std::vector<std::vector<graph::Trajectory>>> per_length(n + 1,
                                                                          std::vector<std::vector<graph::Trajectory>>(layers.size()));
      for (size_t i = 0; i < layers.size(); ++i) {
        const auto block = read_evolution(indices, static_cast<int>(i), row_offset[p], sweep::rows_of_prompt(n), k);
        for (int q = 1; q < n; ++q) {
          const graph::EvolutionView view{block.data() + sweep::row_of_query(q) * k, static_cast<int>(q + 2),
                                          static_cast<int>(k)};
          per_length[q + 1][i] = graph::find_trajectories(view, top_t);
          for (const auto& tr : per_length[q + 1][i]) {
            trajectory_rows.push_back({static_cast<int32_t>(p), q + 1, layers[i], tr.source_token, tr.feature,
                                       tr.final_position});
            if (order.present()) {
              const auto s = order.summary(i, q, tr.final_position, tr.source_token);
              trajectory_order.insert(trajectory_order.end(), s.begin(), s.end());
              const auto v = order.values(i, q, tr.final_position, tr.source_token);
              trajectory_order_values.insert(trajectory_order_values.end(), v.begin(), v.end());
            }
            if (heads.present()) {
              const float* row = heads.split(i, q, tr.final_position);
              for (int64_t c = 0; c < heads.columns(); ++c) {
                trajectory_heads.push_back(row ? row[c] : std::numeric_limits<float>::quiet_NaN());
              }
            }
          }
        }
      }
      std::vector<graph::LengthGraph> graphs(n + 1);
      for (int len = 2; len <= n; ++len) {
        graphs[len] = graph::build_length_graph(len, layers, per_length[len]);
        for (const auto& e : graphs[len].edges) {
          edge_rows.push_back({static_cast<int32_t>(p), len, e.from_token, e.from_layer, e.to_token, e.to_layer,
                               e.num_trajectories, e.best_final_position});
        }
      }
      const auto traced = graph::trace_graph(graphs, n, layers);
      for (const auto& e : traced) {
        traced_rows.push_back({static_cast<int32_t>(p), e.from_token, e.from_layer, e.to_token, e.to_layer,
                               e.num_trajectories, e.best_final_position});
      }
      if (t_index == 0) result.traced_edges += static_cast<int64_t>(traced.size());
      if (t_index == 0) ++result.prompts;

      if (options.write_json) {
        const std::vector<std::string> tokens(token_text.begin() + token_offset[p],
                                              token_text.begin() + token_offset[p] + n);
        const std::string dir = result.json_dir + "/T" + std::to_string(top_t) + "/prompt_" + two_digits(p, 4);
        std::filesystem::create_directories(dir);
        nlohmann::json meta = {{"model", model}, {"layers", layers}, {"top_t", top_t}, {"k", k},
                               {"sae_ids", sae_ids}, {"prompt_index", p}, {"prompt", texts[p]}};
        graph::TrajectoryExtras extras;
        if (heads.present() || order.present()) {
          extras = [&](const graph::Edge& e, int final_position, int) {
            const size_t i = layer_index.at(e.to_layer);
            nlohmann::json out = nlohmann::json::object();
            const auto split = heads.json_of(heads.split(i, e.to_token, final_position));
            if (split.is_object()) out.update(split);
            const auto views = order.json_of(i, e.to_token, final_position, e.from_token);
            if (views.is_object()) out.update(views);
            return out;
          };
        }
        for (int len = 2; len <= n; ++len) {
          graph::GraphDocument doc{len, std::vector<std::string>(tokens.begin(), tokens.begin() + len), meta,
                                   graphs[len].edges, extras};
          graph::write_graph_json(dir + "/length_" + two_digits(len, 3) + ".json", doc);
        }
        nlohmann::json traced_meta = meta;
        traced_meta["traced"] = true;
        graph::write_graph_json(dir + "/traced.json", graph::GraphDocument{n, tokens, traced_meta, traced, extras});
        graph::write_graphml(dir + "/traced.graphml", traced, tokens);

        graph::ExportPrompt exported{static_cast<int>(p), texts[p], tokens,
                                     std::vector<int32_t>(token_ids.begin() + token_offset[p],
                                                          token_ids.begin() + token_offset[p] + n),
                                     traced, {}, {}, {}};
        for (size_t r = first_row; r < trajectory_rows.size(); ++r) {
          const auto& row = trajectory_rows[r];
          exported.rows.push_back({row.length, row.layer, {row.source_token, row.feature, row.final_position}});
          for (int64_t c = 0; heads.present() && c < heads.columns(); ++c) {
            exported.extras.push_back(trajectory_heads[r * heads.columns() + c]);
          }
          for (int c = 0; order.present() && c < 4; ++c) exported.extras.push_back(trajectory_order[r * 4 + c]);
        }
        // The readout of the model's last layer is its own next-token distribution: the logit nodes.
        if (layers.back() == n_model_layers - 1) {
          const size_t base = (p * layers.size() + layers.size() - 1) * 5;
          for (size_t i = base; i < base + 5; ++i) {
            if (readout_ids[i] >= 0) exported.logits.push_back({readout_ids[i], readout_text[i], readout_probs[i]});
          }
        }
        exports->add_prompt(exported);
      }
    }

    if (exports) exports->finish();
    if (output::link_exists(file, group_name)) {
      h5_check_status(H5Ldelete(file, group_name.c_str(), H5P_DEFAULT), "replacing /" + group_name);
    }
    const auto group = output::h5_group(H5Gcreate2(file, group_name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                                        "/" + group_name);
    output::write_attr(group, "top_t", static_cast<int64_t>(top_t));
    write_table(group, "trajectories", trajectory_type(), trajectory_rows);
    write_table(group, "edges", edge_type(), edge_rows);
    write_table(group, "traced_edges", traced_type(), traced_rows);
    if (heads.present()) {
      output::write_matrix(group, "trajectory_heads", trajectory_heads, trajectory_rows.size(),
                           static_cast<hsize_t>(heads.columns()), heads.column_names());
    }
    if (order.present()) {
      output::write_matrix(group, "trajectory_order", trajectory_order, trajectory_rows.size(), 4,
                           {"loo_source", "shapley_source", "loo_agrees", "shapley_agrees"});
      output::write_matrix(group, "trajectory_order_values", trajectory_order_values, trajectory_rows.size(),
                           OrderViews::kValueColumns, OrderViews::value_column_names());
    }
    if (t_index == 0) {
      result.trajectories = static_cast<int64_t>(trajectory_rows.size());
      result.edges = static_cast<int64_t>(edge_rows.size());
    }
  }
  h5_check_status(H5Fflush(file, H5F_SCOPE_GLOBAL), "flushing " + sweep_path);
  return result;
}

}  // namespace saetraj::pipeline
