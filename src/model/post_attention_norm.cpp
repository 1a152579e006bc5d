// The post-attention norm as data (model.h): kept apart from the loaders so that the method's code
// (sweep/) links without them.
#include "saetraj/model/model.h"

namespace saetraj::model {

torch::Tensor PostAttentionNorm::apply(const torch::Tensor& x) const {
  if (!enabled) return x;
  const auto x32 = x.to(torch::kFloat32);
  return x32 * torch::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps) * weight;
}

}  // namespace saetraj::model
