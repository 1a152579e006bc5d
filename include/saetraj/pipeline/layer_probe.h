// Measured encoding cost per analysed layer, for dist::plan_work_measured (NOTE in dist/partition.h):
// the cost of a layer is not known from its SAE's shape, because the top-k scan grows with the number of
// active features.
#pragma once

#include <cstdint>
#include <vector>

#include "saetraj/dist/communicator.h"
#include "saetraj/dist/partition.h"
#include "saetraj/pipeline/activation_exchange.h"
#include "saetraj/sae/sae.h"

namespace saetraj::pipeline {

// Rows a probe encodes per layer: the last queries of a prompt, whole, up to at least this many rows.
constexpr int64_t kProbeRows = 128;

// Collective. Seconds per encoded row of every analysed layer, measured on the tail of prompt `ids` by the
// first rank of the layer's group (`saes` are this rank's, in plan order); every rank gets every cost.
// `model` is non-null on rank 0 only. Nothing is written: the rows are computed again by the sweep.
std::vector<double> probe_layer_costs(const dist::Communicator& comm, const dist::WorkPlan& plan,
                                      const ActivationExchange& exchange, const model::Model* model,
                                      const std::vector<int32_t>& ids, const std::vector<int>& layers,
                                      const std::vector<sae::Sae>& saes, int64_t k, int64_t chunk_rows);

}  // namespace saetraj::pipeline
