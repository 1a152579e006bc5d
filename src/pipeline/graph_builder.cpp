#include "saetraj/pipeline/graph_builder.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <iostream>

#include "saetraj/core/error.h"
#include "saetraj/graph/export_writer.h"
#include "saetraj/graph/graph_json.h"
#include "saetraj/graph/graphml.h"
#include "saetraj/graph/trajectory_graph.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/output/sweep_reader.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::pipeline {

namespace {

using TrajectoryRow = output::TrajectoryRecord;
using EdgeRow = output::EdgeRecord;
using TracedRow = output::TracedEdgeRecord;

// The head split of a sweep made with --heads (/heads; NOTE Format versions in output/sweep_file.h), one
// prompt at a time: split(i, q, slot) is the row of layer axis i, query q and final position `slot`, or
// nullptr when the file has none for that slot (no /heads, or a slot beyond the sweep's top_t).
class HeadSplits {
 public:
  explicit HeadSplits(const output::SweepReader& file) : file_(file) {
    if (!file.has_heads()) return;
    slots_ = file.head_slots();
    columns_ = file.heads() + 3;
    column_names_ = file.head_column_names();
  }
  bool present() const { return slots_ > 0; }
  int64_t columns() const { return columns_; }
  const std::vector<std::string>& column_names() const { return column_names_; }

  void load_prompt(size_t prompt, int n_tokens, size_t n_layers) {
    if (!present()) return;
    queries_ = n_tokens - 1;
    block_ = file_.head_split(static_cast<int64_t>(prompt));  // [L, n - 1, slots, columns]
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
  const output::SweepReader& file_;
  std::vector<float> block_;
};

// The MLP path of a sweep made with --mlp-transcoder (/mlp; NOTE The MLP path in output/sweep_file.h), one
// prompt at a time, as the JSON graphs' MLP vertices: for query q (the graph of length q + 1; the traced graph
// is the full prompt's), every layer's MLP newcomers with final position <= top_t, each with the transcoder
// feature (or bias, skip, error term) that brought it in, that feature's activation and its explanation
// ("transcoder_explanation", from /mlp_explanations; null for other terms and when none is stored).
class MlpVertices {
 public:
  // The transcoder features' explanations (/mlp_explanations, after `saetraj explain`) are read here once.
  explicit MlpVertices(const output::SweepReader& file) : file_(file), k_(file.k()) {
    if (file.has_mlp() && file.has_mlp_explanations()) {
      for (const auto& e : file.mlp_explanations()) {
        if (!e.text.empty()) transcoder_explanations_[{e.layer, e.feature}] = e.text;
      }
    }
  }
  bool present() const { return file_.has_mlp(); }
  const std::map<std::pair<int, int>, std::string>& transcoder_explanations() const { return transcoder_explanations_; }
  void load_prompt(size_t prompt, int n_tokens) {
    if (!present()) return;
    queries_ = n_tokens - 1;
    records_ = file_.mlp(static_cast<int64_t>(prompt));
  }
  nlohmann::json json_of(int q, int top_t, const std::vector<int>& layers,
                         const std::map<std::pair<int, int>, std::string>& explanations) const {
    static const char* const kKinds[] = {"feature", "bias", "skip", "error"};
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < layers.size(); ++i) {
      const int64_t at = static_cast<int64_t>(i) * queries_ + (q - 1);
      for (int64_t slot = 0; slot < k_ && slot <= top_t; ++slot) {
        const int32_t* s = records_.slots.data() + (at * k_ + slot) * output::kMlpSlotColumns;
        if (s[0] < 1 || s[1] < 0 || s[1] > 3) continue;
        const int32_t feature = records_.final_indices[at * k_ + slot];
        nlohmann::json v = {{"layer", layers[i]}, {"feature", feature}, {"final_position", slot},
                            {"step", s[0]}, {"steps", records_.steps[at]}, {"term", kKinds[s[1]]},
                            {"transcoder_feature", s[1] == 0 ? nlohmann::json(s[2]) : nlohmann::json(nullptr)},
                            {"transcoder_activation",
                             s[1] == 0 ? nlohmann::json(records_.activation[at * k_ + slot]) : nlohmann::json(nullptr)},
                            {"transcoder_explanation", transcoder_explanation(layers[i], s)},
                            {"activation", records_.final_values[at * k_ + slot]}};
        const auto e = explanations.find({layers[i], feature});
        if (e != explanations.end()) v["explanation"] = e->second;
        out.push_back(std::move(v));
      }
    }
    return out;
  }
  // The traced graph's MLP vertices (metadata.mlp_path of traced.json): for every vertex (t, l) of the traced
  // edges with t >= 1, in (token, layer) order, one MLP vertex per step of layer l's MLP path at query t that
  // brought features with final position <= top_t into resid_post's top-k list: the term added at that step
  // (a transcoder feature with its activation, or bias, skip, error) and those features, by final position.
  // A path runs token -> (attention edge) -> vertex (t, l) -> MLP vertex -> its features at (t, l) -> the
  // traced edges out of (t, l) into layer l + 1.
  nlohmann::json path_json(const std::vector<graph::Edge>& traced, int top_t, const std::vector<int>& layers,
                           const std::map<std::pair<int, int>, std::string>& explanations) const {
    static const char* const kKinds[] = {"feature", "bias", "skip", "error"};
    std::set<std::pair<int, int>> vertices;
    for (const auto& e : traced) {
      if (e.from_token >= 1) vertices.insert({e.from_token, e.from_layer});
      if (e.to_token >= 1) vertices.insert({e.to_token, e.to_layer});
    }
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [token, layer] : vertices) {
      const auto i = std::find(layers.begin(), layers.end(), layer) - layers.begin();
      SAETRAJ_CHECK(i < static_cast<std::ptrdiff_t>(layers.size()) && token <= queries_, FormatError,
                    "traced vertex (", token, ", ", layer, ") is not a query and analysed layer of the sweep");
      const int64_t at = static_cast<int64_t>(i) * queries_ + (token - 1);
      std::map<int32_t, nlohmann::json> by_step;
      for (int64_t slot = 0; slot < k_ && slot <= top_t; ++slot) {
        const int32_t* s = records_.slots.data() + (at * k_ + slot) * output::kMlpSlotColumns;
        if (s[0] < 1 || s[1] < 0 || s[1] > 3) continue;
        auto& v = by_step[s[0]];
        if (v.is_null()) {
          v = {{"token", token}, {"layer", layer}, {"step", s[0]}, {"steps", records_.steps[at]},
               {"term", kKinds[s[1]]},
               {"transcoder_feature", s[1] == 0 ? nlohmann::json(s[2]) : nlohmann::json(nullptr)},
               {"transcoder_activation",
                s[1] == 0 ? nlohmann::json(records_.activation[at * k_ + slot]) : nlohmann::json(nullptr)},
               {"transcoder_explanation", transcoder_explanation(layer, s)},
               {"features", nlohmann::json::array()}};
        }
        const int32_t feature = records_.final_indices[at * k_ + slot];
        nlohmann::json f = {{"feature", feature}, {"final_position", slot},
                            {"activation", records_.final_values[at * k_ + slot]}};
        const auto e = explanations.find({layer, feature});
        if (e != explanations.end()) f["explanation"] = e->second;
        v["features"].push_back(std::move(f));
      }
      for (auto& [step, v] : by_step) out.push_back(std::move(v));
    }
    return out;
  }

  // path_json's entries as the attribution-graph export takes them.
  static std::vector<graph::MlpPathVertex> path_vertices(const nlohmann::json& path) {
    std::vector<graph::MlpPathVertex> out;
    for (const auto& v : path) {
      graph::MlpPathVertex m;
      m.token = v.at("token").get<int>();
      m.layer = v.at("layer").get<int>();
      m.step = v.at("step").get<int>();
      m.steps = v.at("steps").get<int>();
      m.term = v.at("term").get<std::string>();
      if (m.term == "feature") {
        m.transcoder_feature = v.at("transcoder_feature").get<int>();
        m.transcoder_activation = v.at("transcoder_activation").get<double>();
      }
      for (const auto& f : v.at("features")) {
        m.features.emplace_back(f.at("final_position").get<int>(), f.at("feature").get<int>());
      }
      out.push_back(std::move(m));
    }
    return out;
  }

 private:
  // The explanation of the transcoder feature a slot's term is, or null (another term, or none stored).
  nlohmann::json transcoder_explanation(int layer, const int32_t* slot) const {
    if (slot[1] != 0) return nullptr;
    const auto e = transcoder_explanations_.find({layer, slot[2]});
    return e == transcoder_explanations_.end() ? nlohmann::json(nullptr) : nlohmann::json(e->second);
  }

  const output::SweepReader& file_;
  int64_t k_ = 0, queries_ = 0;
  output::MlpRecords records_;
  std::map<std::pair<int, int>, std::string> transcoder_explanations_;  // (layer, transcoder feature) -> text
};

// The order-free views of a sweep made with --orders (/order/values), one prompt at a time, reduced per
// trajectory to: the source token with the largest leave-one-out drop (activation with every token minus
// without it), the one with the largest Shapley value (ties: the lower token), and whether each is the
// trajectory's prompt-order source token (1/0); -1 everywhere when the file has none for it.
class OrderViews {
 public:
  explicit OrderViews(const output::SweepReader& file) : file_(file) { slots_ = file.order_slots(); }
  bool present() const { return slots_ > 0; }
  void load_prompt(int64_t row_begin, int64_t rows, size_t n_layers) {
    if (!present()) return;
    rows_ = rows;
    block_ = file_.order_values(row_begin, rows);  // [L, rows, 3 slots]
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
  const output::SweepReader& file_;
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

  output::SweepReader file = output::SweepReader::open(sweep_path, true);
  const auto& attributes = file.attributes();
  const auto& prompts = file.prompts();
  const std::vector<int> layers(attributes.layers.begin(), attributes.layers.end());
  const int64_t k = attributes.k;
  const std::string& model = attributes.model;
  const auto& sae_ids = attributes.sae_ids;
  const auto& n_tokens = prompts.n_tokens;
  const auto& token_offset = prompts.token_offset;
  const auto& row_offset = prompts.row_offset;
  const auto& done = prompts.done;
  const auto& texts = prompts.text;
  const auto& token_text = prompts.token_text;
  const auto& token_ids = prompts.token_ids;
  const int64_t n_model_layers = attributes.n_model_layers;
  const auto readout = file.readout();
  const auto& readout_ids = readout.token_ids;
  const auto& readout_probs = readout.probs;
  const auto& readout_text = readout.token_text;
  HeadSplits heads(file);
  OrderViews order(file);
  MlpVertices mlp(file);
  std::map<std::pair<int, int>, std::string> explanations;  // (layer, feature) -> text, after `saetraj explain`
  if (file.has_explanations()) {
    for (const auto& e : file.explanations()) {
      if (!e.text.empty()) explanations[{e.layer, e.feature}] = e.text;
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
    std::vector<output::MlpPathRecord> mlp_path_rows;  // files with /mlp: the traced graphs' MLP vertices
    std::vector<float> mlp_path_activation;
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
      settings.transcoder_explanations = mlp.transcoder_explanations();
      exports.emplace(std::move(settings));
    }
    std::vector<float> trajectory_order_values;  // [rows of trajectory_rows, OrderViews::kValueColumns] likewise

    for (size_t p = 0; p < n_tokens.size(); ++p) {
      if (!done[p]) continue;
      const int n = n_tokens[p];
      const size_t first_row = trajectory_rows.size();
      heads.load_prompt(p, n, layers.size());
      mlp.load_prompt(p, n);
      order.load_prompt(row_offset[p], sweep::rows_of_prompt(n), layers.size());
      // per_length[n][i]: trajectories of layers[i] at length n.
      std::vector<std::vector<std::vector<graph::Trajectory>>> per_length(n + 1,
                                                                          std::vector<std::vector<graph::Trajectory>>(layers.size()));
      for (size_t i = 0; i < layers.size(); ++i) {
        const auto block = file.evolution_indices(static_cast<int64_t>(i), row_offset[p], sweep::rows_of_prompt(n));
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
      // The traced graph's MLP vertices (files with /mlp): traced.json's mlp_path, and one row each of the
      // features they brought in in /graphs/mlp_path.
      nlohmann::json mlp_path_json;
      std::vector<graph::MlpPathVertex> mlp_path;
      if (mlp.present()) {
        mlp_path_json = mlp.path_json(traced, top_t, layers, explanations);
        mlp_path = MlpVertices::path_vertices(mlp_path_json);
        for (const auto& v : mlp_path) {
          const int32_t term = v.term == "feature" ? 0 : v.term == "bias" ? 1 : v.term == "skip" ? 2 : 3;
          for (const auto& [final_position, feature] : v.features) {
            mlp_path_rows.push_back({static_cast<int32_t>(p), v.token, v.layer, v.step, v.steps, term,
                                     term == 0 ? v.transcoder_feature : -1, feature, final_position});
            mlp_path_activation.push_back(term == 0 ? static_cast<float>(v.transcoder_activation)
                                                    : std::numeric_limits<float>::quiet_NaN());
          }
        }
      }

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
          nlohmann::json length_meta = meta;
          if (mlp.present()) length_meta["mlp_vertices"] = mlp.json_of(len - 1, top_t, layers, explanations);
          graph::GraphDocument doc{len, std::vector<std::string>(tokens.begin(), tokens.begin() + len), length_meta,
                                   graphs[len].edges, extras};
          graph::write_graph_json(dir + "/length_" + two_digits(len, 3) + ".json", doc);
        }
        nlohmann::json traced_meta = meta;
        traced_meta["traced"] = true;
        if (mlp.present()) traced_meta["mlp_vertices"] = mlp.json_of(n - 1, top_t, layers, explanations);
        if (mlp.present()) traced_meta["mlp_path"] = mlp_path_json;
        graph::write_graph_json(dir + "/traced.json", graph::GraphDocument{n, tokens, traced_meta, traced, extras});
        graph::write_graphml(dir + "/traced.graphml", traced, tokens, mlp_path);

        graph::ExportPrompt exported{static_cast<int>(p), texts[p], tokens,
                                     std::vector<int32_t>(token_ids.begin() + token_offset[p],
                                                          token_ids.begin() + token_offset[p] + n),
                                     traced, {}, {}, {}, std::move(mlp_path)};
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
    output::GraphTables tables;
    tables.top_t = top_t;
    tables.trajectories = std::move(trajectory_rows);
    tables.edges = std::move(edge_rows);
    tables.traced_edges = std::move(traced_rows);
    if (heads.present()) {
      tables.head_columns = heads.columns();
      tables.head_column_names = heads.column_names();
      tables.trajectory_heads = std::move(trajectory_heads);
    }
    if (order.present()) {
      tables.has_order = true;
      tables.order_column_names = {"loo_source", "shapley_source", "loo_agrees", "shapley_agrees"};
      tables.trajectory_order = std::move(trajectory_order);
      tables.order_value_columns = OrderViews::kValueColumns;
      tables.order_value_column_names = OrderViews::value_column_names();
      tables.trajectory_order_values = std::move(trajectory_order_values);
    }
    if (mlp.present()) {
      tables.has_mlp_path = true;
      tables.mlp_path = std::move(mlp_path_rows);
      tables.mlp_path_activation = std::move(mlp_path_activation);
    }
    file.write_graphs(group_name, tables);
    if (t_index == 0) {
      result.trajectories = static_cast<int64_t>(tables.trajectories.size());
      result.edges = static_cast<int64_t>(tables.edges.size());
    }
  }
  return result;
}

}  // namespace saetraj::pipeline
