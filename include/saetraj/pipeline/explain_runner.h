// `saetraj explain`: attaches Neuronpedia explanations of the features the graphs need (every trajectory
// feature) to a sweep file, as /explanations/{layer, feature, text}, and sets them as the feature labels
// (clerps) of the attribution graphs already exported in the sweep's default graph folder, so that those
// carry them whether `graph` runs before or after `explain`.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "saetraj/graph/explanations.h"

namespace saetraj::pipeline {

struct ExplainOptions {
  graph::ExplanationOptions store;
  std::map<int, std::string> sources;  // layer -> "modelId/sourceId" overriding the SAE's neuronpedia_id
};

struct ExplainResult {
  graph::ExplanationCounts counts;
  int64_t written = 0;
  // The attribution graphs already exported next to the sweep (<sweep>_graphs/T<T>/attribution_graphs/, by
  // the sweep or `saetraj graph`) whose feature labels were set from the explanations just stored: the folders
  // and how many graphs they hold.
  std::vector<std::string> relabelled_dirs;
  int64_t relabelled_graphs = 0;
};

ExplainResult explain_sweep(const std::string& sweep_path, const ExplainOptions& options);

}  // namespace saetraj::pipeline
