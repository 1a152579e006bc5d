#include "saetraj/graph/export_writer.h"

#include <cstdio>
#include <filesystem>

#include "saetraj/core/error.h"

namespace saetraj::graph {

namespace {

std::string graphs_dir(const ExportSettings& s) { return s.dir + "/attribution_graphs"; }

}  // namespace

std::string ExportWriter::slug(const std::string& sweep_name, int top_t, int prompt) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-T%d-p%04d", top_t, prompt);
  return sweep_name + buf;
}

ExportWriter::ExportWriter(ExportSettings settings)
    : settings_(std::move(settings)), table_path_(settings_.dir + "/trajectories.csv") {
  std::error_code ec;
  std::filesystem::create_directories(graphs_dir(settings_), ec);
  SAETRAJ_CHECK(!ec, IoError, "cannot create ", graphs_dir(settings_), ": ", ec.message());
  table_.open(table_path_, std::ios::binary | std::ios::trunc);
  SAETRAJ_CHECK(table_.is_open(), IoError, "cannot open ", table_path_, " for writing the trajectory table");
  table_ << trajectory_table_header(settings_.extra_columns);
}

void ExportWriter::add_prompt(const ExportPrompt& p) {
  table_ << trajectory_table_rows({p.prompt, p.tokens, p.traced, p.rows, p.extras}, settings_.extra_columns.size());
  SAETRAJ_CHECK(table_.good(), IoError, "writing the trajectory table to ", table_path_, " failed");

  AttributionGraphInput in;
  in.slug = slug(settings_.sweep_name, settings_.top_t, p.prompt);
  in.scan = settings_.scan.scan;
  in.source_set = settings_.scan.source_set;
  in.prompt = p.text;
  in.tokens = p.tokens;
  in.token_ids = p.token_ids;
  in.layers = settings_.layers;
  in.top_t = settings_.top_t;
  in.traced = p.traced;
  in.logits = p.logits;
  in.info = settings_.info;
  in.explanations = &settings_.explanations;
  in.mlp_path = p.mlp_path;
  in.transcoder_explanations = &settings_.transcoder_explanations;
  const auto doc = attribution_graph_json(in);
  write_json_file(graphs_dir(settings_) + "/" + in.slug + ".json", doc, "the attribution graph");
  graphs_.push_back(doc["metadata"]);
}

void ExportWriter::finish() {
  table_.close();
  SAETRAJ_CHECK(!table_.fail(), IoError, "writing the trajectory table to ", table_path_, " failed");
  write_json_file(graphs_dir(settings_) + "/graph-metadata.json", {{"graphs", graphs_}}, "the graph index");
}

int64_t relabel_attribution_graphs(const std::string& dir,
                                   const std::map<std::pair<int, int>, std::string>& explanations,
                                   const std::map<std::pair<int, int>, std::string>* transcoder_explanations) {
  namespace fs = std::filesystem;
  const fs::path graphs = fs::path(dir) / "attribution_graphs";
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::directory_iterator it(graphs, ec), end; !ec && it != end; it.increment(ec)) {
    const auto& p = it->path();
    if (p.extension() == ".json" && p.filename() != "graph-metadata.json") files.push_back(p);
  }
  SAETRAJ_CHECK(!ec, IoError, "cannot list ", graphs.string(), ": ", ec.message());
  for (const auto& p : files) {
    std::ifstream in(p, std::ios::binary);
    SAETRAJ_CHECK(in.is_open(), IoError, "cannot open ", p.string());
    auto doc = nlohmann::json::parse(in, nullptr, false);
    SAETRAJ_CHECK(!doc.is_discarded() && doc.is_object(), FormatError, p.string(),
                  ": not an attribution graph (not a JSON object)");
    if (relabel_attribution_graph(doc, explanations, p.string(), transcoder_explanations) > 0) {
      write_json_file(p.string(), doc, "the attribution graph");
    }
  }
  return static_cast<int64_t>(files.size());
}

}  // namespace saetraj::graph
