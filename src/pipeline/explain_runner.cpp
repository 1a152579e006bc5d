#include "saetraj/pipeline/explain_runner.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <regex>
#include <set>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/graph/export_writer.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/output/sweep_reader.h"
#include "saetraj/pipeline/graph_builder.h"

namespace saetraj::pipeline {

namespace {

bool is_model_slash_source(const std::string& id) {
  const auto slash = id.find('/');
  return slash != std::string::npos && slash > 0 && slash + 1 < id.size() && id.find('/', slash + 1) == std::string::npos;
}

graph::NeuronpediaSource parse_source(const std::string& id, int layer) {
  const auto slash = id.find('/');
  SAETRAJ_CHECK(slash != std::string::npos && slash > 0 && slash + 1 < id.size(), InputError,
                "layer ", layer, ": Neuronpedia source \"", id,
                "\" is not MODEL/SOURCE (the SAE's cfg has no neuronpedia_id; give --source ", layer,
                "=MODEL/SOURCE)");
  graph::NeuronpediaSource s{id.substr(0, slash), id.substr(slash + 1)};
  graph::check_neuronpedia_source(s);
  return s;
}

}  // namespace

namespace {

namespace fs = std::filesystem;

// A graph folder's T<T>/ subfolders that hold attribution graphs, in name order.
std::vector<fs::path> exported_in(const fs::path& graphs_dir) {
  std::vector<fs::path> t_dirs;
  std::error_code ec;
  for (fs::directory_iterator it(graphs_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (std::regex_match(name, std::regex(R"(T\d+)")) && fs::is_directory(it->path() / "attribution_graphs")) {
      t_dirs.push_back(it->path());
    }
  }
  std::sort(t_dirs.begin(), t_dirs.end());
  return t_dirs;
}

}  // namespace

ExplainResult explain_sweep(const std::string& sweep_path, const ExplainOptions& options) {
  auto file = output::SweepReader::open(sweep_path, true);
  const auto& layers = file.attributes().layers;
  const auto& sae_ids = file.attributes().sae_ids;
  // A source named for a layer the sweep did not analyse (or --mlp-source on a sweep without /mlp) is a
  // mistake in the command line, not something to skip quietly.
  std::vector<std::string> layer_names;
  for (int layer : layers) layer_names.push_back(std::to_string(layer));
  const auto check_layers = [&](const std::map<int, std::string>& given, const char* flag) {
    for (const auto& [layer, id] : given) {
      SAETRAJ_CHECK(std::find(layers.begin(), layers.end(), layer) != layers.end(), InputError, flag, " ", layer,
                    "=", id, ": layer ", layer, " is not one of the layers ", sweep_path, " analysed (",
                    join(layer_names, ","), ")");
    }
  };
  check_layers(options.sources, "--source");
  SAETRAJ_CHECK(options.mlp_sources.empty() || file.has_mlp(), InputError, "--mlp-source: ", sweep_path,
                " has no /mlp (it was swept without --mlp-transcoder)");
  check_layers(options.mlp_sources, "--mlp-source");
  // The folders given with --json-dir must hold exported graphs (checked before anything is written).
  std::vector<fs::path> given_t_dirs;
  for (const auto& given : options.json_dirs) {
    SAETRAJ_CHECK(fs::is_directory(given), InputError, "--json-dir ", given,
                  ": no such folder (give the folder that graph --json-dir wrote)");
    const auto found = exported_in(given);
    SAETRAJ_CHECK(!found.empty(), InputError, "--json-dir ", given,
                  " holds no T<T>/attribution_graphs/ (give the folder that graph --json-dir wrote)");
    given_t_dirs.insert(given_t_dirs.end(), found.begin(), found.end());
  }

  std::map<int, std::set<int64_t>> wanted;
  for (const auto& t : file.graphs().trajectories) wanted[t.layer].insert(t.feature);

  graph::ExplanationStore store(options.store);
  ExplainResult result;
  std::vector<output::ExplanationRecord> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    const int layer = layers[i];
    if (!wanted.count(layer)) continue;
    const auto it = options.sources.find(layer);
    const graph::NeuronpediaSource source = parse_source(it != options.sources.end() ? it->second : sae_ids[i], layer);
    const auto found = with_context(str("explaining layer ", layer, " (", source.model_id, "/", source.source_id, ")"),
                                    [&] { return store.lookup(source, wanted[layer]); });
    std::cerr << "saetraj: layer " << layer << ": " << graph::describe(found.counts) << "\n";
    result.counts += found.counts;
    for (const auto& [feature, text] : found.descriptions) out.push_back({layer, static_cast<int32_t>(feature), text});
  }
  file.write_explanations(out);
  result.written = static_cast<int64_t>(out.size());

  // The transcoder features /mlp references (term "feature"), per analysed layer, explained from the
  // transcoder's Neuronpedia source: --mlp-source, else the transcoder id /mlp records (its cfg's
  // neuronpedia_id, e.g. "gemma-2-2b/12-gemmascope-transcoder-16k"). A transcoder with neither is skipped.
  if (file.has_mlp()) {
    const auto& tc_ids = file.mlp_transcoder_ids();
    const int64_t k = file.k();
    std::vector<std::set<int64_t>> tc_wanted(layers.size());
    const auto& n_tokens = file.prompts().n_tokens;
    for (int64_t p = 0; p < file.n_prompts(); ++p) {
      const auto m = file.mlp(p);
      const int64_t queries = n_tokens[p] - 1;
      for (size_t i = 0; i < layers.size(); ++i) {
        for (int64_t q = 0; q < queries; ++q) {
          for (int64_t slot = 0; slot < k; ++slot) {
            const int32_t* s = m.slots.data() + ((static_cast<int64_t>(i) * queries + q) * k + slot) *
                                                    output::kMlpSlotColumns;
            if (s[0] >= 1 && s[1] == 0 && s[2] >= 0) tc_wanted[i].insert(s[2]);
          }
        }
      }
    }
    std::vector<output::ExplanationRecord> tc_out;
    for (size_t i = 0; i < layers.size(); ++i) {
      const int layer = layers[i];
      if (tc_wanted[i].empty()) continue;
      const auto it = options.mlp_sources.find(layer);
      if (it == options.mlp_sources.end() && !is_model_slash_source(tc_ids[i])) {
        result.mlp_skipped_layers.push_back(layer);  // said in one line below
        continue;
      }
      const graph::NeuronpediaSource source = parse_source(it != options.mlp_sources.end() ? it->second : tc_ids[i], layer);
      const auto found =
          with_context(str("explaining layer ", layer, "'s transcoder (", source.model_id, "/", source.source_id, ")"),
                       [&] { return store.lookup(source, tc_wanted[i]); });
      std::cerr << "saetraj: layer " << layer << " transcoder: " << graph::describe(found.counts) << "\n";
      result.mlp_counts += found.counts;
      for (const auto& [feature, text] : found.descriptions) {
        tc_out.push_back({layer, static_cast<int32_t>(feature), text});
      }
    }
    if (!result.mlp_skipped_layers.empty()) {
      std::vector<std::string> names;
      for (int layer : result.mlp_skipped_layers) names.push_back(std::to_string(layer));
      const bool one = names.size() == 1;
      std::cerr << "saetraj: no Neuronpedia id (MODEL/SOURCE) for the "
                << (one ? "transcoder of layer " : "transcoders of layers ")
                << join(names, ", ") << ": no explanations for " << (one ? "its" : "their")
                << " features (give --mlp-source LAYER=MODEL/SOURCE)\n";
    }
    file.write_mlp_explanations(tc_out);
    result.mlp_written = static_cast<int64_t>(tc_out.size());
  }

  // The exports written before now carry the explanations too, as build_graphs would set them.
  std::map<std::pair<int, int>, std::string> texts, transcoder_texts;
  for (const auto& e : out) {
    if (!e.text.empty()) texts[{e.layer, e.feature}] = e.text;
  }
  if (file.has_mlp() && file.has_mlp_explanations()) {
    for (const auto& e : file.mlp_explanations()) {
      if (!e.text.empty()) transcoder_texts[{e.layer, e.feature}] = e.text;
    }
  }
  std::vector<fs::path> t_dirs = exported_in(default_graphs_dir(sweep_path));
  for (const auto& given : given_t_dirs) {
    if (std::find_if(t_dirs.begin(), t_dirs.end(), [&](const fs::path& t) { return fs::equivalent(t, given); }) ==
        t_dirs.end()) {
      t_dirs.push_back(given);
    }
  }
  for (const auto& dir : t_dirs) {
    result.relabelled_graphs +=
        graph::relabel_attribution_graphs(dir.string(), texts, file.has_mlp() ? &transcoder_texts : nullptr);
    result.relabelled_dirs.push_back((dir / "attribution_graphs").string());
  }
  return result;
}

}  // namespace saetraj::pipeline
