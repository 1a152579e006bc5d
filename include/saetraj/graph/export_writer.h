// The graph step's exports for other tools, written next to the JSON graphs of one T
// (<out>_graphs/T<T>/):
//   trajectories.csv                     the tidy trajectory table of every prompt (graph/trajectory_table.h)
//   attribution_graphs/<slug>.json       each prompt's traced graph as an attribution graph
//                                        (graph/attribution_export.h), slug "<sweep name>-T<T>-p<NNNN>"
//   attribution_graphs/graph-metadata.json  {"graphs": [every graph's metadata]}: the index
//                                        circuit-tracer's local server reads from its data folder
#pragma once

#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "saetraj/graph/attribution_export.h"
#include "saetraj/graph/trajectory_table.h"

namespace saetraj::graph {

struct ExportSettings {
  std::string dir;                          // <out>_graphs/T<T>
  std::string sweep_name;                   // the sweep file's name without .h5 (slug prefix)
  int top_t = 0;
  std::vector<int> layers;                  // analysed model layers
  NeuronpediaScan scan;
  nlohmann::json info = nlohmann::json::object();  // metadata.info of every graph
  std::vector<std::string> extra_columns;   // of the trajectory table
  std::map<std::pair<int, int>, std::string> explanations;  // (layer, feature) -> text: the feature nodes' clerp
  // (layer, transcoder feature) -> text: the MLP nodes' clerp (sweeps with --mlp-transcoder, after explain)
  std::map<std::pair<int, int>, std::string> transcoder_explanations;
};

struct ExportPrompt {
  int prompt = 0;
  std::string text;
  std::vector<std::string> tokens;
  std::vector<int32_t> token_ids;
  std::vector<Edge> traced;
  std::vector<TrajectoryRecord> rows;
  std::vector<double> extras;               // [rows, extra columns]
  std::vector<LogitEntry> logits;           // empty: no logit nodes
  std::vector<MlpPathVertex> mlp_path;      // the traced graph's MLP vertices; empty without /mlp
};

class ExportWriter {
 public:
  // Creates the folders and writes the table's header. IoError when they cannot be written.
  explicit ExportWriter(ExportSettings settings);
  void add_prompt(const ExportPrompt& prompt);
  // Writes graph-metadata.json and closes the table. IoError when a write failed.
  void finish();

  static std::string slug(const std::string& sweep_name, int top_t, int prompt);

 private:
  ExportSettings settings_;
  std::string table_path_;
  std::ofstream table_;
  nlohmann::json graphs_ = nlohmann::json::array();
};

// Sets the clerps of every attribution graph an ExportWriter wrote under `dir` (<out>_graphs/T<T>, each
// attribution_graphs/<slug>.json; graph-metadata.json holds no nodes) from `explanations`
// and, with `transcoder_explanations`, their MLP nodes' (relabel_attribution_graph), rewriting the files
// whose labels changed. Returns how many graphs it read. IoError or FormatError naming the file.
int64_t relabel_attribution_graphs(const std::string& dir,
                                   const std::map<std::pair<int, int>, std::string>& explanations,
                                   const std::map<std::pair<int, int>, std::string>* transcoder_explanations = nullptr);

}  // namespace saetraj::graph
