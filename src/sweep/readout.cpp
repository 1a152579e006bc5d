#include "saetraj/sweep/readout.h"

namespace saetraj::sweep {

Readout layer_readout(const model::Model& model, const torch::Tensor& resid_post_last, int top) {
  c10::InferenceMode guard;
  const auto logits = model.readout(resid_post_last.reshape({1, -1})).reshape({-1});
  const auto probs = torch::softmax(logits.to(torch::kFloat64), 0);
  // Ties resolved by lower token id: stable sort of descending probabilities.
  const auto order = std::get<1>(probs.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto best = order.slice(0, 0, top);
  const auto ids = best.to(torch::kCPU), best_probs = probs.index_select(0, best).to(torch::kCPU);
  Readout r;
  for (int64_t i = 0; i < ids.size(0); ++i) {
    r.token_ids.push_back(static_cast<int32_t>(ids[i].item<int64_t>()));
    r.probs.push_back(static_cast<float>(best_probs[i].item<double>()));
  }
  return r;
}

}  // namespace saetraj::sweep
