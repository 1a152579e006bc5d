// The work partition: a pure function of the job's shape, tested without MPI.
//
// Layers are split into contiguous groups balanced by encoding cost (d_in x d_sae per row: the top-k scan
// that follows the product costs the same whatever the data, NOTE in sweep/topk.cpp); each rank belongs to
// one group and loads only that group's SAEs. When there are more ranks than groups, the ranks of a group
// share its prompts' query chunks. Chunks are fixed by the prompt alone (never by the rank count), so every
// row is computed by the same operations whatever the number of ranks: the output is identical for 1, 2
// or 3 ranks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace saetraj::dist {

struct LayerGroup {
  std::vector<int> layer_indices;  // positions in the analysed-layer list
  std::vector<int> ranks;
  double cost = 0.0;
};

struct WorkPlan {
  std::vector<LayerGroup> groups;
  std::vector<int> group_of_rank;  // per rank

  const LayerGroup& group_for(int rank) const { return groups.at(group_of_rank.at(rank)); }
  int index_in_group(int rank) const;
};

// `layer_costs[i]` is the relative cost of analysed layer i (d_in x d_sae).
WorkPlan plan_work(int n_ranks, const std::vector<double>& layer_costs);

// Query chunks [q_begin, q_end) of a prompt of n_tokens, each of at most `chunk_rows` rows (a query
// larger than that is a chunk of its own).
std::vector<std::pair<int64_t, int64_t>> query_chunks(int64_t n_tokens, int64_t chunk_rows);

// The contiguous run of chunks [first, last) that member `part` of `parts` computes, balanced by rows.
std::pair<size_t, size_t> chunks_for_member(const std::vector<std::pair<int64_t, int64_t>>& chunks, int parts,
                                            int part);

}  // namespace saetraj::dist
