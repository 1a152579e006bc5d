#include "saetraj/dist/partition.h"

#include <algorithm>
#include <numeric>

#include "saetraj/core/error.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::dist {

namespace {
void assign_ranks(WorkPlan& plan, int n_ranks);
}  // namespace

int WorkPlan::index_in_group(int rank) const {
  const auto& ranks = group_for(rank).ranks;
  return static_cast<int>(std::find(ranks.begin(), ranks.end(), rank) - ranks.begin());
}

WorkPlan plan_work(int n_ranks, const std::vector<double>& layer_costs) {
  SAETRAJ_CHECK(n_ranks >= 1, InputError, "need at least one rank");
  SAETRAJ_CHECK(!layer_costs.empty(), InputError, "need at least one layer");
  const int n_layers = static_cast<int>(layer_costs.size());
  const int n_groups = std::min(n_ranks, n_layers);

  // Contiguous layer groups: cut the running cost at multiples of total / n_groups, keeping every group
  // non-empty.
  const double total = std::accumulate(layer_costs.begin(), layer_costs.end(), 0.0);
  WorkPlan plan;
  plan.groups.resize(n_groups);
  int layer = 0;
  double running = 0.0;
  for (int g = 0; g < n_groups; ++g) {
    const double target = total * (g + 1) / n_groups;
    const int must_leave = n_groups - g - 1;  // layers that later groups need at least
    do {
      plan.groups[g].layer_indices.push_back(layer);
      plan.groups[g].cost += layer_costs[layer];
      running += layer_costs[layer];
      ++layer;
    } while (layer < n_layers - must_leave &&
             (g == n_groups - 1 || running + 0.5 * layer_costs[layer] <= target));
  }

  assign_ranks(plan, n_ranks);
  return plan;
}

namespace {

// Ranks to groups in proportion to their cost: each group gets one, the rest go one by one to the group
// with the highest cost per rank.
void assign_ranks(WorkPlan& plan, int n_ranks) {
  const int n_groups = static_cast<int>(plan.groups.size());
  std::vector<int> count(n_groups, 1);
  for (int extra = n_ranks - n_groups; extra > 0; --extra) {
    int best = 0;
    for (int g = 1; g < n_groups; ++g) {
      if (plan.groups[g].cost / count[g] > plan.groups[best].cost / count[best]) best = g;
    }
    ++count[best];
  }
  plan.group_of_rank.resize(n_ranks);
  int rank = 0;
  for (int g = 0; g < n_groups; ++g) {
    for (int i = 0; i < count[g]; ++i) {
      plan.groups[g].ranks.push_back(rank);
      plan.group_of_rank[rank] = g;
      ++rank;
    }
  }
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> query_chunks(int64_t n_tokens, int64_t chunk_rows) {
  SAETRAJ_CHECK(chunk_rows >= 1, InputError, "chunk_rows must be positive");
  std::vector<std::pair<int64_t, int64_t>> chunks;
  for (int64_t q0 = 1; q0 < n_tokens;) {
    int64_t q1 = q0 + 1;
    while (q1 < n_tokens && sweep::rows_of_prompt(q1 + 1) - sweep::rows_of_prompt(q0) <= chunk_rows) ++q1;
    chunks.emplace_back(q0, q1);
    q0 = q1;
  }
  return chunks;
}

std::pair<size_t, size_t> chunks_for_member(const std::vector<std::pair<int64_t, int64_t>>& chunks, int parts,
                                            int part) {
  SAETRAJ_CHECK(parts >= 1 && part >= 0 && part < parts, InputError, "member ", part, " of ", parts);
  // Member i takes the chunks whose first row lies in [total*i/parts, total*(i+1)/parts).
  std::vector<int64_t> start(chunks.size());
  int64_t total = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    start[c] = total;
    total += sweep::rows_of_prompt(chunks[c].second) - sweep::rows_of_prompt(chunks[c].first);
  }
  auto first_at_or_after = [&](int64_t row) {
    return static_cast<size_t>(std::lower_bound(start.begin(), start.end(), row) - start.begin());
  };
  const int64_t lo = total * part / parts, hi = total * (part + 1) / parts;
  return {first_at_or_after(lo), part == parts - 1 ? chunks.size() : first_at_or_after(hi)};
}

}  // namespace saetraj::dist
