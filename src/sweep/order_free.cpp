// Leave-one-out and sampled Shapley values of a newcomer's activation (NOTE in
// include/saetraj/sweep/order_free.h), in float64 LibTorch ops on the request's device.
#include "saetraj/sweep/order_free.h"

#include <algorithm>
#include <limits>

#include "saetraj/core/error.h"
#include "saetraj/sweep/head_split.h"

namespace saetraj::sweep {

namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// a_i of query q, i = 0..q, in float64 [q+1, d] (b_O/(q+1) included).
torch::Tensor contributions(const AttentionParts& parts, int64_t q, const torch::TensorOptions& f64) {
  const auto pattern = parts.pattern.select(1, q).slice(1, 0, q + 1).to(f64);
  auto a = (pattern.unsqueeze(-1) * parts.head_out.slice(1, 0, q + 1).to(f64)).sum(0);
  if (parts.bias.defined()) a = a + parts.bias.to(f64) / static_cast<double>(q + 1);
  return a;
}

// Orders evaluated together: a [batch * (q+1), d] float64 block of about 16 MiB, fixed by q and d alone.
int64_t order_batch(int64_t q, int64_t d, int64_t orders) {
  return std::clamp<int64_t>((int64_t{1} << 21) / std::max<int64_t>(1, (q + 1) * d), 1, std::max<int64_t>(1, orders));
}

}  // namespace

uint64_t order_seed(uint64_t seed, int64_t prompt, int64_t layer, int64_t q) {
  uint64_t state = seed;
  uint64_t mixed = splitmix64(state);
  for (int64_t v : {prompt, layer, q}) {
    state = mixed ^ static_cast<uint64_t>(v);
    mixed = splitmix64(state);
  }
  return mixed;
}

std::vector<int64_t> sample_orders(int64_t n, int64_t orders, uint64_t seed) {
  std::vector<int64_t> out(static_cast<size_t>(n * orders));
  uint64_t state = seed;
  for (int64_t m = 0; m < orders; ++m) {
    int64_t* order = out.data() + m * n;
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    for (int64_t i = n - 1; i > 0; --i) {
      // Unbiased draw in [0, i] by rejection.
      const uint64_t bound = static_cast<uint64_t>(i) + 1, limit = UINT64_MAX - UINT64_MAX % bound;
      uint64_t r;
      do r = splitmix64(state); while (r >= limit);
      std::swap(order[i], order[r % bound]);
    }
  }
  return out;
}

torch::Tensor coalition_activations(const sae::Sae& sae, const EvolutionRequest& request, int64_t q,
                                    const torch::Tensor& sums, const torch::Tensor& features) {
  const auto f64 = sums.options();
  const bool norm = request.post_norm && request.post_norm->enabled;
  auto attn = sums;
  if (norm) {
    attn = sums * (sums.pow(2).mean(-1, true) + request.post_norm->eps).rsqrt() * request.post_norm->weight.to(f64);
  }
  const auto x = request.resid_pre->select(0, q).to(f64).unsqueeze(0) + attn;
  const auto w = sae.w_enc.index_select(1, features).to(f64);  // [d, F]
  const auto pre = torch::matmul(sae.preprocess(x), w) + sae.b_enc.index_select(0, features).to(f64);
  auto act = pre.clamp_min(0.0);
  if (sae.cfg.activation == sae::Activation::JumpReLU) {
    act = torch::where(pre > sae.threshold.index_select(0, features).to(f64), act, torch::zeros_like(act));
  }
  return act;
}

void order_free(const sae::Sae& sae, const EvolutionRequest& request, int64_t q, const int32_t* lists, int64_t k,
                int64_t slots, int64_t orders, uint64_t seed, float* out, float* full, float* empty) {
  c10::InferenceMode guard;
  SAETRAJ_CHECK(orders >= 2, InputError, "--orders must be at least 2 (a standard error needs two), got ", orders);
  const int64_t n = q + 1;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::fill(out, out + slots * n * kOrderColumns, nan);
  std::fill(full, full + slots, nan);
  std::fill(empty, empty + slots, nan);
  const auto entry = entry_steps(lists, q, k, slots);
  std::vector<int64_t> slot_of, feature;
  for (int64_t slot = 0; slot < slots; ++slot) {
    if (entry[slot] < 0) continue;
    slot_of.push_back(slot);
    feature.push_back(lists[(q + 1) * k + slot]);
  }
  if (slot_of.empty()) return;
  const auto count = static_cast<int64_t>(feature.size());
  const auto device = request.resid_pre->device();
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(device);
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  const auto features = torch::from_blob(feature.data(), {count}, i64).to(device);
  const auto a = contributions(*request.parts, q, f64);  // [n, d]
  const int64_t d = a.size(1);
  const auto total = a.sum(0, true);                      // [1, d]

  const auto ends = coalition_activations(sae, request, q, torch::cat({torch::zeros_like(total), total}), features);
  const auto v_empty = ends[0], v_full = ends[1];                             // [F]
  const auto loo = coalition_activations(sae, request, q, total - a, features);  // [n, F]

  // Marginals of every order, gathered back to token positions: [orders, n, F].
  const auto order_list = sample_orders(n, orders, seed);
  std::vector<torch::Tensor> per_token;
  const int64_t batch = order_batch(q, d, orders);
  for (int64_t m0 = 0; m0 < orders; m0 += batch) {
    const int64_t m1 = std::min(orders, m0 + batch), b = m1 - m0;
    const auto perm = torch::from_blob(const_cast<int64_t*>(order_list.data()) + m0 * n, {b, n}, i64).to(device);
    const auto prefix = a.index_select(0, perm.reshape({-1})).reshape({b, n, d}).cumsum(1);
    const auto act = coalition_activations(sae, request, q, prefix.reshape({b * n, d}), features).reshape({b, n, count});
    const auto before = torch::cat({v_empty.expand({b, 1, count}), act.slice(1, 0, n - 1)}, 1);
    const auto marginal = act - before;  // position t of each order
    // where token j sits in each order (perm's inverse; unique indices, so the scatter is deterministic)
    const auto position = torch::empty_like(perm).scatter_(1, perm, torch::arange(n, perm.options()).expand({b, n}));
    per_token.push_back(marginal.gather(1, position.unsqueeze(-1).expand({b, n, count})));
  }
  const auto marginals = torch::cat(per_token, 0);  // [orders, n, F]
  const auto mean = marginals.mean(0);
  const auto stderr_ = ((marginals - mean).pow(2).sum(0) / static_cast<double>(orders - 1)).sqrt() /
                       std::sqrt(static_cast<double>(orders));

  const auto table = torch::stack({loo, mean, stderr_}, -1).permute({1, 0, 2}).to(torch::kFloat32).cpu().contiguous();  // [F, n, 3]
  const auto ends_host = torch::stack({v_full, v_empty}).to(torch::kFloat32).cpu().contiguous();  // [2, F]
  const float* t = table.data_ptr<float>();
  const float* e = ends_host.data_ptr<float>();
  for (int64_t i = 0; i < count; ++i) {
    std::copy(t + i * n * kOrderColumns, t + (i + 1) * n * kOrderColumns, out + slot_of[i] * n * kOrderColumns);
    full[slot_of[i]] = e[i];
    empty[slot_of[i]] = e[count + i];
  }
}

}  // namespace saetraj::sweep
