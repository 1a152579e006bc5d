// The evolution tables of one layer for one prompt: every step of every query encoded by the layer's
// SAE in large row chunks (one matrix product per chunk), then reduced to top-k active features.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "saetraj/sae/sae.h"
#include "saetraj/sweep/decompose.h"

namespace saetraj::sweep {

// Seconds spent in each phase, summed over calls.
struct PhaseTimes {
  double decompose = 0.0;
  double encode = 0.0;
  double topk = 0.0;
};

struct EvolutionRequest {
  const torch::Tensor* resid_pre = nullptr;  // [N, d]
  const AttentionParts* parts = nullptr;
  PostAttention post_attention;
  int64_t q_begin = 1;  // queries [q_begin, q_end)
  int64_t q_end = 1;
  int64_t k = 400;
  int64_t chunk_rows = 2048;  // rows encoded per matrix product
};

// Writes rows_of_prompt(q_end) - rows_of_prompt(q_begin) rows of k entries into indices/values.
// Throws NumericError naming the query when an SAE input or activation is not finite.
void compute_evolution(const sae::Sae& sae, const EvolutionRequest& request, int32_t* indices, float* values,
                       PhaseTimes* times = nullptr);

}  // namespace saetraj::sweep
