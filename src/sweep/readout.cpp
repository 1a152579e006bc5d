#include "saetraj/sweep/readout.h"

namespace saetraj::sweep {

Readout layer_readout(const model::Model& model, const torch::Tensor& resid_post_last, int top) {
  c10::InferenceMode guard;
  const auto logits = model.readout(resid_post_last.reshape({1, -1})).reshape({-1});
  const auto probs = torch::softmax(logits.to(torch::kFloat64), 0);
  // Ties resolved by lower token id: stable sort of descending probabilities.
  const auto order = std::get<1>(probs.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  Readout r;
  for (int i = 0; i < top && i < order.size(0); ++i) {
    const int64_t id = order[i].item<int64_t>();
    r.token_ids.push_back(static_cast<int32_t>(id));
    r.probs.push_back(static_cast<float>(probs[id].item<double>()));
  }
  return r;
}

}  // namespace saetraj::sweep
