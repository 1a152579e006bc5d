#include "saetraj/sweep/topk.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "saetraj/core/error.h"

namespace saetraj::sweep {

void topk_active(const torch::Tensor& acts, int64_t k, int32_t* indices, float* values) {
  SAETRAJ_CHECK(acts.dim() == 2 && acts.scalar_type() == torch::kFloat32, InputError,
                "topk_active expects a 2-D float32 tensor");
  SAETRAJ_CHECK(k > 0, InputError, "k must be positive, got ", k);
  const auto contiguous = acts.contiguous();
  const int64_t rows = contiguous.size(0), width = contiguous.size(1);
  const float* data = contiguous.data_ptr<float>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<float, int32_t>> active;
    active.reserve(256);
    const auto before = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    for (int64_t r = begin; r < end; ++r) {
      const float* row = data + r * width;
      active.clear();
      for (int64_t f = 0; f < width; ++f) {
        if (row[f] > 0.0f) active.emplace_back(row[f], static_cast<int32_t>(f));
      }
      const int64_t take = std::min<int64_t>(k, static_cast<int64_t>(active.size()));
      if (static_cast<int64_t>(active.size()) > take) {
        std::nth_element(active.begin(), active.begin() + take, active.end(), before);
      }
      std::sort(active.begin(), active.begin() + take, before);
      int32_t* out_i = indices + r * k;
      float* out_v = values + r * k;
      for (int64_t i = 0; i < take; ++i) {
        out_i[i] = active[i].second;
        out_v[i] = active[i].first;
      }
      std::fill(out_i + take, out_i + k, -1);
      std::fill(out_v + take, out_v + k, 0.0f);
    }
  });
}

}  // namespace saetraj::sweep
