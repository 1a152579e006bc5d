// The top-k rule of topk.h (active features only, value descending, ties to the lower index, -1/0 padding)
// in LibTorch ops, for the GPU path. It runs on tensors of any device; tests run it on the CPU against the
// fused scan of topk_cpu.cpp.
//
// [NOTE] Exact ties with torch::topk. torch::topk returns the `keep` largest values, but among equal values
// it may return any of them, in any order. Two fixes make the result the rule's, whatever it returned:
//  - the set: every value strictly above the keep-th value v_k is always returned; only entries equal to
//    v_k can be the wrong ones, and only in rows where more entries equal v_k than the returned list holds.
//    Those rows (rare: exact float ties at the cut) are selected again with the lowest-index entries equal
//    to v_k, counted by a running sum along the row;
//  - the order: the returned lists are sorted by index, then stable-sorted by value descending.
// Inactive entries are zeroed first, so a list with fewer than `keep` active features ends in zeros, which
// become -1/0 padding.
#include "saetraj/sweep/topk.h"

#include "saetraj/core/error.h"

namespace saetraj::sweep {

TopkTensors topk_active_tensors(torch::Tensor& pre, const torch::Tensor& threshold, int64_t keep, int64_t k) {
  SAETRAJ_CHECK(pre.dim() == 2 && pre.scalar_type() == torch::kFloat32, InputError,
                "top-k selection expects a 2-D float32 tensor");
  SAETRAJ_CHECK(keep > 0 && keep <= k, InputError, "keep must be in 1..", k, ", got ", keep);
  const int64_t rows = pre.size(0), width = pre.size(1);
  TopkTensors out;
  const auto int_options = pre.options().dtype(torch::kInt32);
  out.indices = torch::full({rows, k}, -1, int_options);
  out.values = torch::zeros({rows, k}, pre.options());
  if (rows == 0) return out;
  out.finite = torch::isfinite(pre).all().item<bool>();
  if (!out.finite) return out;

  auto active = pre > 0;
  if (threshold.defined()) active.logical_and_(pre > threshold);
  pre.masked_fill_(active.logical_not_(), 0.0f);
  const int64_t take = std::min(keep, width);
  auto [top_v, top_i] = pre.topk(take, /*dim=*/1, /*largest=*/true, /*sorted=*/true);

  // Rows whose cut value is shared by more entries than the list holds (NOTE above).
  const auto cut = top_v.narrow(1, take - 1, 1);              // [rows, 1]
  const auto places = (top_v == cut).sum(1);                   // entries equal to the cut that were taken
  const auto at_cut = ((pre == cut) & (cut > 0)).sum(1);       // entries equal to the cut in the row
  const auto tie_rows = (at_cut > places).nonzero().squeeze(1);
  if (tie_rows.numel() > 0) {
    const auto sub = pre.index_select(0, tie_rows);
    const auto sub_cut = cut.index_select(0, tie_rows);
    const auto equal = sub == sub_cut;
    const auto rank = equal.to(torch::kInt32).cumsum(1, torch::kInt32);
    const auto chosen = (sub > sub_cut) | (equal & (rank <= places.index_select(0, tie_rows).unsqueeze(1)));
    auto [v, i] = torch::where(chosen, sub, torch::full({}, -1.0f, sub.options())).topk(take, 1, true, true);
    top_v.index_copy_(0, tie_rows, v);
    top_i.index_copy_(0, tie_rows, i);
  }

  // Order: value descending, ties by lower index.
  const auto by_index = std::get<1>(top_i.sort(/*dim=*/1));
  top_i = top_i.gather(1, by_index);
  top_v = top_v.gather(1, by_index);
  const auto by_value = std::get<1>(top_v.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
  top_i = top_i.gather(1, by_value);
  top_v = top_v.gather(1, by_value);
  const auto live = top_v > 0;
  out.indices.narrow(1, 0, take).copy_(torch::where(live, top_i, torch::full({}, -1, top_i.options())));
  out.values.narrow(1, 0, take).copy_(top_v.masked_fill(live.logical_not(), 0.0f));
  return out;
}

void copy_lists_to_host(const TopkTensors& lists, int32_t* indices, float* values) {
  const int64_t rows = lists.indices.size(0), k = lists.indices.size(1);
  torch::from_blob(indices, {rows, k}, torch::kInt32).copy_(lists.indices);
  torch::from_blob(values, {rows, k}, torch::kFloat32).copy_(lists.values);
}

}  // namespace saetraj::sweep
