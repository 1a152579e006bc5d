#include "saetraj/pipeline/explain_runner.h"

#include <iostream>
#include <set>

#include "saetraj/core/error.h"
#include "saetraj/output/sweep_reader.h"

namespace saetraj::pipeline {

namespace {

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

ExplainResult explain_sweep(const std::string& sweep_path, const ExplainOptions& options) {
  auto file = output::SweepReader::open(sweep_path, true);
  const auto& layers = file.attributes().layers;
  const auto& sae_ids = file.attributes().sae_ids;
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
    result.counts.requested += found.counts.requested;
    result.counts.from_cache += found.counts.from_cache;
    result.counts.from_files += found.counts.from_files;
    result.counts.fetched += found.counts.fetched;
    result.counts.missing += found.counts.missing;
    result.counts.bulk_files += found.counts.bulk_files;
    for (const auto& [feature, text] : found.descriptions) out.push_back({layer, static_cast<int32_t>(feature), text});
  }
  file.write_explanations(out);
  result.written = static_cast<int64_t>(out.size());
  return result;
}

}  // namespace saetraj::pipeline
