// SPEC 1.6: the layer readout. resid_post of a layer at the last position goes through the final norm and
// the unembedding in place of the final layer's; the top tokens and their probabilities are recorded.
#pragma once

#include <cstdint>
#include <vector>

#include "saetraj/model/model.h"

namespace saetraj::sweep {

struct Readout {
  std::vector<int32_t> token_ids;  // top tokens, most probable first
  std::vector<float> probs;
};

Readout layer_readout(const model::Model& model, const torch::Tensor& resid_post_last, int top = 5);

}  // namespace saetraj::sweep
