// `saetraj explain`: attaches Neuronpedia explanations of the features the graphs need (every trajectory
// feature) to a sweep file, as /explanations/{layer, feature, text}, and sets them as the feature labels
// (clerps) of the attribution graphs already exported in the sweep's default graph folder, so that those
// carry them whether `graph` runs before or after `explain`. For a sweep with /mlp (--mlp-transcoder) it also
// explains the transcoder features /mlp references, as /mlp_explanations/{layer, feature, text}, which the
// JSON graphs' MLP vertices carry as transcoder_explanation (written by `saetraj graph` after `explain`).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "saetraj/graph/explanations.h"

namespace saetraj::pipeline {

struct ExplainOptions {
  graph::ExplanationOptions store;
  std::map<int, std::string> sources;  // layer -> "modelId/sourceId" overriding the SAE's neuronpedia_id
  // layer -> "modelId/sourceId" of the layer's MLP transcoder (sweeps with /mlp), overriding the transcoder id
  // /mlp records (its cfg's neuronpedia_id)
  std::map<int, std::string> mlp_sources;
  // Folders `graph --json-dir` wrote graphs into, whose T<T>/attribution_graphs/ get the explanations as
  // labels too (the sweep's default folder, FILE_graphs/, always does when it exists).
  std::vector<std::string> json_dirs;
};

struct ExplainResult {
  graph::ExplanationCounts counts;
  int64_t written = 0;
  // Sweeps with /mlp: the transcoder features /mlp references, explained into /mlp_explanations; the layers
  // skipped because their transcoder has no MODEL/SOURCE id and no --mlp-source was given.
  graph::ExplanationCounts mlp_counts;
  int64_t mlp_written = 0;
  std::vector<int> mlp_skipped_layers;
  // The attribution graphs already exported next to the sweep (<sweep>_graphs/T<T>/attribution_graphs/, by
  // the sweep or `saetraj graph`) whose feature labels were set from the explanations just stored: the folders
  // and how many graphs they hold.
  std::vector<std::string> relabelled_dirs;
  int64_t relabelled_graphs = 0;
};

ExplainResult explain_sweep(const std::string& sweep_path, const ExplainOptions& options);

}  // namespace saetraj::pipeline
