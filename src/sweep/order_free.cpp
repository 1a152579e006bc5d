// Leave-one-out and sampled Shapley values of a newcomer's activation (NOTE in
// include/saetraj/sweep/order_free.h), in float64 LibTorch ops on the request's device, in the coordinates
// of the source tokens (NOTE The game in token coordinates there).
#include "saetraj/sweep/order_free.h"

#include <algorithm>
#include <cmath>
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

// One query's game for the features F, reduced to the source tokens (the NOTE's token coordinates).
struct TokenGame {
  torch::Tensor proj;    // [n, F] w_i . W_enc[:, f]
  torch::Tensor base;    // [F] u . W_enc[:, f]
  torch::Tensor offset;  // [F] b_enc[f] - b_dec . W_enc[:, f] (b_dec only when subtracted)
  torch::Tensor gram;    // [n, n] a_i . a_k: with a post-attention norm, else undefined
  torch::Tensor wgram;   // [n, n] w_i . w_k: with an SAE normalisation, else undefined
  torch::Tensor cross;   // [n] u . w_i: likewise
  double uu = 0.0;       // u . u: likewise
  torch::Tensor threshold;  // [F] JumpReLU thresholds, else undefined
  bool post_norm = false;
  double norm_eps = 0.0;
  sae::Normalization normalization = sae::Normalization::None;
  int64_t d = 0;
};

// Per coalition: the sums over its tokens that v_f needs (undefined where the game has no such term).
struct CoalitionSums {
  torch::Tensor lin;    // [rows, F] sum_i proj_i
  torch::Tensor gram;   // [rows] sum_{i,k} a_i . a_k
  torch::Tensor wgram;  // [rows] sum_{i,k} w_i . w_k
  torch::Tensor cross;  // [rows] sum_i u . w_i
};

TokenGame token_game(const sae::Sae& sae, const EvolutionRequest& request, int64_t q, const torch::Tensor& features,
                     const torch::TensorOptions& f64) {
  TokenGame g;
  const auto a = contributions(*request.parts, q, f64);  // [n, d]
  g.d = a.size(1);
  g.post_norm = request.post_norm && request.post_norm->enabled;
  g.normalization = sae.cfg.normalization;
  const bool centre = sae.cfg.center_residual || g.normalization == sae::Normalization::LayerNorm;
  const bool scaled =
      g.normalization == sae::Normalization::LayerNorm || g.normalization == sae::Normalization::ConstantNormRescale;
  auto w = a;
  if (g.post_norm) {
    g.norm_eps = request.post_norm->eps;
    g.gram = torch::matmul(a, a.t());
    w = a * request.post_norm->weight.to(f64);
  }
  auto u = request.resid_pre->select(0, q).to(f64);
  if (centre) {
    w = w - w.mean(-1, true);
    u = u - u.mean();
  }
  const auto w_enc = sae.w_enc.index_select(1, features).to(f64);  // [d, F]
  g.proj = torch::matmul(w, w_enc);
  g.base = torch::matmul(u, w_enc);
  g.offset = sae.b_enc.index_select(0, features).to(f64);
  if (sae.cfg.apply_b_dec_to_input) g.offset = g.offset - torch::matmul(sae.b_dec.to(f64), w_enc);
  if (scaled) {
    g.wgram = torch::matmul(w, w.t());
    g.cross = torch::matmul(w, u);
    g.uu = u.dot(u).item<double>();
  }
  if (sae.cfg.activation == sae::Activation::JumpReLU) g.threshold = sae.threshold.index_select(0, features).to(f64);
  return g;
}

// Sums over the coalitions `sets` ([rows, n] of 0/1).
CoalitionSums sums_of_sets(const TokenGame& g, const torch::Tensor& sets) {
  CoalitionSums s;
  s.lin = torch::matmul(sets, g.proj);
  if (g.gram.defined()) s.gram = (torch::matmul(sets, g.gram) * sets).sum(-1);
  if (g.wgram.defined()) {
    s.wgram = (torch::matmul(sets, g.wgram) * sets).sum(-1);
    s.cross = torch::matmul(sets, g.cross);
  }
  return s;
}

// sum_{i,k <= t} m[perm_t', perm_k] for every prefix t of every order: [b, n]. The row of token perm_t adds
// its diagonal and twice its products with the tokens before it.
torch::Tensor prefix_quadratic(const torch::Tensor& m, const torch::Tensor& perm) {
  const int64_t b = perm.size(0), n = perm.size(1);
  const auto permuted = m.index_select(0, perm.reshape({-1})).reshape({b, n, n}).gather(2, perm.unsqueeze(1).expand({b, n, n}));
  const auto ones = torch::ones({n, n}, m.options());
  const auto weights = 2.0 * ones.tril(-1) + ones.diag().diag();
  return (permuted * weights).sum(-1).cumsum(1);
}

// Sums over every prefix of the orders `perm` ([b, n]): rows b * n, order by order.
CoalitionSums sums_of_prefixes(const TokenGame& g, const torch::Tensor& perm) {
  const int64_t b = perm.size(0), n = perm.size(1);
  const auto flat = perm.reshape({-1});
  CoalitionSums s;
  s.lin = g.proj.index_select(0, flat).reshape({b, n, -1}).cumsum(1).reshape({b * n, -1});
  if (g.gram.defined()) s.gram = prefix_quadratic(g.gram, perm).reshape({-1});
  if (g.wgram.defined()) {
    s.wgram = prefix_quadratic(g.wgram, perm).reshape({-1});
    s.cross = g.cross.index_select(0, flat).reshape({b, n}).cumsum(1).reshape({-1});
  }
  return s;
}

// v_f of each coalition: [rows, F].
torch::Tensor activations(const TokenGame& g, const CoalitionSums& s) {
  // rho: the post-attention RMSNorm's scalar of the coalition's sum (1 without one).
  auto rho = torch::ones({s.lin.size(0)}, s.lin.options());
  if (g.post_norm) rho = (s.gram.clamp_min(0.0) / static_cast<double>(g.d) + g.norm_eps).rsqrt();
  auto pre = g.base + rho.unsqueeze(1) * s.lin;
  if (g.wgram.defined()) {
    const auto sq = (g.uu + 2.0 * rho * s.cross + rho * rho * s.wgram).clamp_min(0.0);  // |y|^2
    const auto sigma = g.normalization == sae::Normalization::LayerNorm
                           ? 1.0 / ((sq / static_cast<double>(g.d - 1)).sqrt() + 1e-5)
                           : (static_cast<double>(g.d) / sq).sqrt();
    pre = sigma.unsqueeze(1) * pre;
  }
  pre = pre + g.offset;
  auto act = pre.clamp_min(0.0);
  if (g.threshold.defined()) act = torch::where(pre > g.threshold, act, torch::zeros_like(act));
  return act;
}

// Orders evaluated together: a [batch, n, max(n, F)] float64 block of about 16 MiB, fixed by q and F alone.
int64_t order_batch(int64_t n, int64_t count, int64_t orders) {
  const int64_t per_order = std::max<int64_t>(1, n * std::max(n, count));
  return std::clamp<int64_t>((int64_t{1} << 21) / per_order, 1, std::max<int64_t>(1, orders));
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
  const auto game = token_game(sae, request, q, features, f64);

  // The empty and the full coalition, then every token left out in turn.
  const auto ones = torch::ones({n, n}, f64);
  const auto ends = activations(game, sums_of_sets(game, torch::cat({torch::zeros({1, n}, f64), ones.slice(0, 0, 1)})));
  const auto v_empty = ends[0], v_full = ends[1];                              // [F]
  const auto loo = activations(game, sums_of_sets(game, ones - torch::eye(n, f64)));  // [n, F]

  // Marginals of every order, gathered back to token positions: [orders, n, F].
  const auto order_list = sample_orders(n, orders, seed);
  std::vector<torch::Tensor> per_token;
  const int64_t batch = order_batch(n, count, orders);
  for (int64_t m0 = 0; m0 < orders; m0 += batch) {
    const int64_t m1 = std::min(orders, m0 + batch), b = m1 - m0;
    const auto perm = torch::from_blob(const_cast<int64_t*>(order_list.data()) + m0 * n, {b, n}, i64).to(device);
    const auto act = activations(game, sums_of_prefixes(game, perm)).reshape({b, n, count});
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
