#include "saetraj/sweep/topk.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "saetraj/core/error.h"

namespace saetraj::sweep {

namespace {

bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

}  // namespace

void keep_best(std::vector<Candidate>& candidates, int64_t keep) {
  if (static_cast<int64_t>(candidates.size()) <= keep) return;
  std::nth_element(candidates.begin(), candidates.begin() + keep, candidates.end(), ranks_before);
  candidates.resize(keep);
}

void write_ranked(std::vector<Candidate>& candidates, int64_t keep, int64_t k, int32_t* out_i, float* out_v) {
  const int64_t take = std::min<int64_t>(std::min(keep, k), static_cast<int64_t>(candidates.size()));
  if (static_cast<int64_t>(candidates.size()) > take) {
    std::nth_element(candidates.begin(), candidates.begin() + take, candidates.end(), ranks_before);
  }
  std::sort(candidates.begin(), candidates.begin() + take, ranks_before);
  for (int64_t i = 0; i < take; ++i) {
    out_i[i] = candidates[i].second;
    out_v[i] = candidates[i].first;
  }
  std::fill(out_i + take, out_i + k, -1);
  std::fill(out_v + take, out_v + k, 0.0f);
}

namespace {

// One row: the `keep` best active features by (value desc, index asc), padded with -1/0 to k slots.
// Returns false on a non-finite value.
//
// [NOTE] The scan's cost hardly depends on how many features are active. The row is read in blocks of
// kScanBlock: a first, vectorisable pass computes the values, the finiteness and whether any of them is a
// candidate (active and beating the running bound); only blocks with a candidate take the second pass,
// which writes every value to the buffer and advances the count by the condition, without a
// data-dependent branch. Sparse rows (real SAEs: ~100 active of 16k) thus skip most blocks, and dense rows
// (random or dense SAEs, JumpReLU thresholds that pass a random ~5-50%) pay no branch mispredictions.
// When the buffer holds kPruneFactor * keep candidates it is cut to the `keep` best, and the keep-th value
// becomes the bound that later features must beat strictly. That is exact: a later feature has a larger
// index than every kept one, so with a value equal to the bound it ranks after all of them. Before this,
// layers of equal shape but different activations cost up to 2x differently, which unbalanced the ranks'
// layer groups.
constexpr int64_t kPruneFactor = 4;
constexpr int64_t kScanBlock = 16;

int64_t prune_size(int64_t keep) { return std::max<int64_t>(kPruneFactor * keep, 64); }

template <bool kThreshold>
bool select_row(const float* row, int64_t width, const float* bias, const float* threshold, int64_t keep,
                int64_t k, std::vector<Candidate>& buffer, int32_t* out_i, float* out_v) {
  const int64_t prune_at = prune_size(keep);
  buffer.resize(static_cast<size_t>(prune_at));
  Candidate* c = buffer.data();
  int64_t n = 0;
  float bound = 0.0f;
  int bad = 0;
  float v[kScanBlock];
  for (int64_t f0 = 0; f0 < width; f0 += kScanBlock) {
    const int64_t len = std::min(kScanBlock, width - f0);
    int hit = 0;
    for (int64_t i = 0; i < len; ++i) {
      const int64_t f = f0 + i;
      v[i] = bias ? row[f] + bias[f] : row[f];
      bad |= (v[i] - v[i]) != 0.0f;  // NaN and +-Inf give NaN
      hit |= (v[i] > bound) & (!kThreshold || v[i] > threshold[f]);
    }
    if (!hit) continue;
    for (int64_t i = 0; i < len; ++i) {
      const int64_t f = f0 + i;
      c[n] = {v[i], static_cast<int32_t>(f)};
      n += static_cast<int64_t>((v[i] > bound) & (!kThreshold || v[i] > threshold[f]));
      if (n == prune_at) {
        std::nth_element(c, c + keep - 1, c + n, ranks_before);
        bound = c[keep - 1].first;
        n = keep;
      }
    }
  }
  buffer.resize(static_cast<size_t>(n));
  write_ranked(buffer, keep, k, out_i, out_v);
  return bad == 0;
}

bool select_all(const torch::Tensor& t, const float* bias, const float* threshold, int64_t keep, int64_t k,
                int32_t* indices, float* values) {
  SAETRAJ_CHECK(t.dim() == 2 && t.scalar_type() == torch::kFloat32, InputError,
                "top-k selection expects a 2-D float32 tensor");
  SAETRAJ_CHECK(k > 0, InputError, "k must be positive, got ", k);
  SAETRAJ_CHECK(keep > 0 && keep <= k, InputError, "keep must be in 1..", k, ", got ", keep);
  const auto contiguous = t.contiguous();
  const int64_t rows = contiguous.size(0), width = contiguous.size(1);
  const float* data = contiguous.data_ptr<float>();
  std::atomic<bool> finite{true};
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<Candidate> active;
    active.reserve(static_cast<size_t>(prune_size(keep)));
    for (int64_t r = begin; r < end; ++r) {
      const bool ok = threshold ? select_row<true>(data + r * width, width, bias, threshold, keep, k, active,
                                                   indices + r * k, values + r * k)
                                : select_row<false>(data + r * width, width, bias, nullptr, keep, k, active,
                                                    indices + r * k, values + r * k);
      if (!ok) finite = false;
    }
  });
  return finite;
}

}  // namespace

void topk_active(const torch::Tensor& acts, int64_t k, int32_t* indices, float* values) {
  select_all(acts, nullptr, nullptr, k, k, indices, values);
}

bool topk_active_fused(const torch::Tensor& x_w_enc, const float* bias, const float* threshold, int64_t keep,
                       int64_t k, int32_t* indices, float* values) {
  return select_all(x_w_enc, bias, threshold, keep, k, indices, values);
}

}  // namespace saetraj::sweep
