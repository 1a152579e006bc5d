// `saetraj explain`: attaches Neuronpedia explanations of the features the graphs need (every trajectory
// feature) to a sweep file, as /explanations/{layer, feature, text}.
#pragma once

#include <map>
#include <string>

#include "saetraj/graph/explanations.h"

namespace saetraj::pipeline {

struct ExplainOptions {
  graph::ExplanationOptions store;
  std::map<int, std::string> sources;  // layer -> "modelId/sourceId" overriding the SAE's neuronpedia_id
};

struct ExplainResult {
  graph::ExplanationCounts counts;
  int64_t written = 0;
};

ExplainResult explain_sweep(const std::string& sweep_path, const ExplainOptions& options);

}  // namespace saetraj::pipeline
