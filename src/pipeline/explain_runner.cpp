#include "saetraj/pipeline/explain_runner.h"

#include <iostream>
#include <set>

#include "saetraj/core/error.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_file.h"

namespace saetraj::pipeline {

using output::h5_check_status;
using output::H5Handle;

namespace {

struct TrajectoryFeature {
  int32_t layer, feature;
};

// The (layer, feature) pairs of /graphs/trajectories.
std::vector<TrajectoryFeature> trajectory_features(hid_t file, const std::string& path) {
  SAETRAJ_CHECK(output::link_exists(file, "graphs/trajectories"), InputError, path,
                " has no graphs yet; run `saetraj graph ", path, "` first");
  const auto ds = output::h5_dataset(H5Dopen2(file, "graphs/trajectories", H5P_DEFAULT), "graphs/trajectories");
  const auto space = output::h5_space(H5Dget_space(ds), "graphs/trajectories");
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  const auto type = output::h5_type(H5Tcreate(H5T_COMPOUND, sizeof(TrajectoryFeature)), "type");
  H5Tinsert(type, "layer", HOFFSET(TrajectoryFeature, layer), H5T_NATIVE_INT32);
  H5Tinsert(type, "feature", HOFFSET(TrajectoryFeature, feature), H5T_NATIVE_INT32);
  std::vector<TrajectoryFeature> rows(n);
  if (n) h5_check_status(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()), "reading graphs/trajectories");
  return rows;
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

ExplainResult explain_sweep(const std::string& sweep_path, const ExplainOptions& options) {
  H5Handle file = output::open_sweep_file(sweep_path, true, "give a sweep file written by saetraj sweep");
  const auto layers = output::read_attr_ints(file, "layers");
  const auto sae_ids = output::read_attr_strings(file, "sae_ids");
  std::map<int, std::set<int64_t>> wanted;
  for (const auto& t : trajectory_features(file, sweep_path)) wanted[t.layer].insert(t.feature);

  graph::ExplanationStore store(options.store);
  ExplainResult result;
  std::vector<int32_t> out_layer, out_feature;
  std::vector<std::string> out_text;
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
    for (const auto& [feature, text] : found.descriptions) {
      out_layer.push_back(layer);
      out_feature.push_back(static_cast<int32_t>(feature));
      out_text.push_back(text);
    }
  }
  if (output::link_exists(file, "explanations")) {
    h5_check_status(H5Ldelete(file, "explanations", H5P_DEFAULT), "replacing /explanations");
  }
  output::write_vector(file, "explanations/layer", out_layer);
  output::write_vector(file, "explanations/feature", out_feature);
  output::write_strings(file, "explanations/text", out_text, {static_cast<hsize_t>(out_text.size())});
  result.written = static_cast<int64_t>(out_text.size());
  return result;
}

}  // namespace saetraj::pipeline
