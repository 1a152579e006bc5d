// The factored method's CPU kernels (derivation in factored.h): the assembly of pre-activations as a running
// sum over sources, fused with the top-k scan, multi-threaded over query groups.
#include "saetraj/sweep/factored.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "saetraj/core/error.h"
#include "saetraj/core/timing.h"
#include "saetraj/sweep/evolution.h"
#include "factored_common.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/sweep/topk.h"

// The assembly loops are compiled twice on x86-64, for AVX2+FMA and for the baseline, and the loader picks
// the one the CPU runs (GCC function multi-versioning); elsewhere they are compiled once.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define SAETRAJ_MULTIVERSION __attribute__((target_clones("arch=haswell", "default")))
#else
#define SAETRAJ_MULTIVERSION
#endif

namespace saetraj::sweep {

namespace {

using factored_detail::Layout;
using factored_detail::Preprocessing;
using factored_detail::Scale;

// Per row: pre = resid * R_q + acc * S_j + bias * B + beta (the NOTE's scalars).
struct RowScalars {
  float resid = 1.0f, acc = 0.0f, bias = 0.0f;
};

// The NOTE's scalars for every row of queries [q_begin, q_end), rows ordered by q then step.
std::vector<RowScalars> row_scalars(const Preprocessing& pre, const EvolutionRequest& req) {
  const auto& parts = *req.parts;
  const int64_t heads = parts.pattern.size(0), n = parts.pattern.size(1), d = pre.d;
  const bool norm = req.post_norm && req.post_norm->enabled;
  const bool bias = parts.bias.defined();
  std::vector<RowScalars> out(rows_of_prompt(req.q_end) - rows_of_prompt(req.q_begin));
  const auto pattern = parts.pattern.to(torch::kFloat32).contiguous();
  const float* a = pattern.data_ptr<float>();
  if (!norm && pre.scale == Scale::One) {  // no per-vector scalars: no residual-width work at all
    int64_t row = 0;
    for (int64_t q = req.q_begin; q < req.q_end; ++q) {
      out[row++] = {1.0f, 0.0f, 0.0f};
      for (int64_t j = 0; j <= q; ++j) out[row++] = {1.0f, 1.0f, bias ? static_cast<float>((j + 1.0) / (q + 1.0)) : 0.0f};
    }
    return out;
  }
  const auto u = parts.head_out.to(torch::kFloat32).contiguous();
  const auto r = req.resid_pre->to(torch::kFloat32).contiguous();
  const auto b = bias ? parts.bias.to(torch::kFloat32).contiguous() : torch::zeros({d});
  const auto g = norm ? req.post_norm->weight.to(torch::kFloat32).contiguous() : torch::ones({d});
  const double eps = norm ? req.post_norm->eps : 0.0;
  const float *pu = u.data_ptr<float>(), *pr = r.data_ptr<float>(), *pb = b.data_ptr<float>(),
              *pg = g.data_ptr<float>();
  at::parallel_for(req.q_begin, req.q_end, 1, [&](int64_t q_lo, int64_t q_hi) {
    std::vector<float> c(d), x(d);
    for (int64_t q = q_lo; q < q_hi; ++q) {
      int64_t row = rows_of_prompt(q) - rows_of_prompt(req.q_begin);
      const float* rq = pr + q * d;
      const float s0 = static_cast<float>(pre.sigma(rq));
      out[row++] = {s0, 0.0f, 0.0f};
      std::fill(c.begin(), c.end(), 0.0f);
      const float spread = static_cast<float>(1.0 / (q + 1.0));
      for (int64_t j = 0; j <= q; ++j) {
        for (int64_t h = 0; h < heads; ++h) {
          const float w = a[(h * n + q) * n + j];
          if (w == 0.0f) continue;
          const float* uh = pu + (h * n + j) * d;
          for (int64_t f = 0; f < d; ++f) c[f] += w * uh[f];
        }
        if (bias) {
          for (int64_t f = 0; f < d; ++f) c[f] += spread * pb[f];
        }
        double rho = 1.0;
        if (norm) {
          double sumsq = 0.0;
          for (int64_t f = 0; f < d; ++f) sumsq += static_cast<double>(c[f]) * c[f];
          rho = 1.0 / std::sqrt(sumsq / d + eps);
        }
        double sigma = 1.0;
        if (pre.scale != Scale::One) {
          for (int64_t f = 0; f < d; ++f) x[f] = rq[f] + static_cast<float>(rho) * c[f] * pg[f];
          sigma = pre.sigma(x.data());
        }
        out[row++] = {static_cast<float>(sigma), static_cast<float>(sigma * rho),
                      bias ? static_cast<float>(sigma * rho * (j + 1.0) / (q + 1.0)) : 0.0f};
      }
    }
  });
  return out;
}

// acc[f] += sum_h w[h] z[h][f], four heads per pass over acc (the pass is bound by loads and stores).
SAETRAJ_MULTIVERSION void add_heads(float* __restrict acc, const float* const* z, const float* w, int64_t heads,
                                    int64_t width) {
  int64_t h = 0;
  for (; h + 4 <= heads; h += 4) {
    const float *__restrict z0 = z[h], *__restrict z1 = z[h + 1], *__restrict z2 = z[h + 2],
                *__restrict z3 = z[h + 3];
    const float w0 = w[h], w1 = w[h + 1], w2 = w[h + 2], w3 = w[h + 3];
    for (int64_t f = 0; f < width; ++f) acc[f] += (w0 * z0[f] + w1 * z1[f]) + (w2 * z2[f] + w3 * z3[f]);
  }
  for (; h < heads; ++h) {
    const float* __restrict zh = z[h];
    const float wh = w[h];
    for (int64_t f = 0; f < width; ++f) acc[f] += wh * zh[f];
  }
}

// v[f] = s.resid R[f] + s.acc acc[f] + s.bias B[f] + beta[f]; returns false when some v is not finite.
SAETRAJ_MULTIVERSION bool assemble(float* __restrict v, const float* __restrict resid, const float* __restrict acc,
                                   const float* __restrict bias_row, const float* __restrict beta, RowScalars s,
                                   int64_t width) {
  int bad = 0;
  for (int64_t f = 0; f < width; ++f) {
    const float x = s.resid * resid[f] + s.acc * acc[f] + s.bias * bias_row[f] + beta[f];
    v[f] = x;
    bad |= (x - x) != 0.0f;  // NaN and +-Inf give NaN
  }
  return bad == 0;
}

// One row's candidates while the column blocks and feature passes go by. `bound` is the keep-th best value
// once the list has been cut to `keep`: later features must beat it strictly, which is exact because they
// have larger indices than every kept one (NOTE in topk.cpp).
struct RowCandidates {
  std::vector<Candidate> list;
  float bound = 0.0f;

  void cut(int64_t keep) {
    keep_best(list, keep);
    if (static_cast<int64_t>(list.size()) == keep) {
      bound = std::max(bound, std::min_element(list.begin(), list.end())->first);
    }
  }
};

// Appends the active features of one pass that beat the row's bound, and cuts the list when it grows past
// `prune_at`. Blocks of 16 features are tested first and skipped when none qualifies (NOTE in topk.cpp).
void collect(const float* v, const float* threshold, int64_t width, int32_t first_feature, RowCandidates& row,
             int64_t keep, int64_t prune_at) {
  constexpr int64_t kBlock = 16;
  const float bound = row.bound;
  for (int64_t f0 = 0; f0 < width; f0 += kBlock) {
    const int64_t len = std::min(kBlock, width - f0);
    int hit = 0;
    for (int64_t f = f0; f < f0 + len; ++f) hit |= (v[f] > threshold[f]) & (v[f] > bound);
    if (!hit) continue;
    for (int64_t f = f0; f < f0 + len; ++f) {
      if ((v[f] > threshold[f]) & (v[f] > bound)) row.list.emplace_back(v[f], first_feature + static_cast<int32_t>(f));
    }
  }
  if (static_cast<int64_t>(row.list.size()) > prune_at) row.cut(keep);
}

// The first query of each group of kQueryGroup consecutive queries, in an order whose contiguous runs have
// balanced work (query q has q+2 rows): smallest, largest, second smallest, second largest, ...
std::vector<int64_t> balanced_order(int64_t q_begin, int64_t q_end) {
  std::vector<int64_t> firsts;
  for (int64_t q = q_begin; q < q_end; q += kQueryGroup) firsts.push_back(q);
  std::vector<int64_t> order;
  for (int64_t lo = 0, hi = static_cast<int64_t>(firsts.size()) - 1; lo <= hi; ++lo, --hi) {
    order.push_back(firsts[lo]);
    if (hi != lo) order.push_back(firsts[hi]);
  }
  return order;
}

}  // namespace

int64_t factored_column_block(int64_t n_tokens, int64_t heads, int64_t d_sae, int64_t chunk_rows) {
  const int64_t rows = Layout{heads}.rows(n_tokens);
  const int64_t budget = std::max<int64_t>(chunk_rows, 1) * d_sae;  // floats
  if (rows * d_sae <= budget) return d_sae;
  return std::min(d_sae, std::max<int64_t>(256, budget / rows / 256 * 256));
}

void compute_evolution_factored(const sae::Sae& sae, const EvolutionRequest& req, int32_t* indices, float* values,
                                PhaseTimes* times) {
  c10::InferenceMode guard;
  const auto& parts = *req.parts;
  const int64_t heads = parts.pattern.size(0), n = parts.pattern.size(1), d_sae = sae.cfg.d_sae;
  SAETRAJ_CHECK(1 <= req.q_begin && req.q_begin < req.q_end && req.q_end <= n, InputError, "query range [",
                req.q_begin, ", ", req.q_end, ") is outside [1, ", n, ")");
  SAETRAJ_CHECK(req.k > 0, InputError, "k must be positive, got ", req.k);
  const Layout layout{heads};
  const Preprocessing pre(sae.cfg);
  const int64_t k = req.k;
  const int64_t keep = sae.cfg.activation == sae::Activation::TopK ? std::min(k, sae.cfg.topk_k) : k;
  const int64_t row_base = rows_of_prompt(req.q_begin);

  auto t0 = std::chrono::steady_clock::now();
  const auto inputs = projection_inputs(sae, pre, req, layout, n);
  const auto scalars = row_scalars(pre, req);
  const auto pattern = parts.pattern.to(torch::kFloat32).contiguous();
  const float* a = pattern.data_ptr<float>();
  const auto order = balanced_order(req.q_begin, req.q_end);
  double t_decompose = seconds_since(t0), t_encode = 0.0, t_assemble = 0.0;

  // Rows of the projection matrix this range needs (sources < q_end), rounded up to whole fixed blocks.
  const int64_t all_rows = layout.rows(n);
  const int64_t needed = std::min(all_rows, (layout.rows(req.q_end) + kProjectionBlockRows - 1) /
                                                kProjectionBlockRows * kProjectionBlockRows);
  const int64_t width_max = factored_column_block(n, heads, d_sae, req.chunk_rows);
  const auto b_enc = sae.b_enc.to(torch::kFloat32);
  const auto threshold = sae.cfg.activation == sae::Activation::JumpReLU
                             ? sae.threshold.to(torch::kFloat32).clamp_min(0.0f)
                             : torch::zeros({d_sae});
  auto z = torch::empty({needed, width_max});
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};

  for (int64_t c0 = 0; c0 < d_sae; c0 += width_max) {
    const int64_t width = std::min(width_max, d_sae - c0);
    t0 = std::chrono::steady_clock::now();
    const auto w = sae.w_enc.slice(1, c0, c0 + width).to(torch::kFloat32);
    auto proj = z.slice(1, 0, width);
    if (width != width_max) proj = torch::empty({needed, width});
    for (int64_t r0 = 0; r0 < needed; r0 += kProjectionBlockRows) {
      const int64_t r1 = std::min(all_rows, r0 + kProjectionBlockRows);
      auto out = proj.slice(0, r0, r1);
      if (out.is_contiguous()) {
        torch::mm_out(out, inputs.slice(0, r0, r1), w);
      } else {
        out.copy_(torch::mm(inputs.slice(0, r0, r1), w));
      }
    }
    const auto zc = proj.contiguous();
    auto beta = b_enc.slice(0, c0, c0 + width).clone();
    if (sae.cfg.apply_b_dec_to_input) beta -= zc[Layout::kDec];
    const auto thr = threshold.slice(0, c0, c0 + width).contiguous();
    t_encode += seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    const float* pz = zc.data_ptr<float>();
    const float* pbeta = beta.data_ptr<float>();
    const float* pthr = thr.data_ptr<float>();
    const bool first_block = c0 == 0;
    at::parallel_for(0, static_cast<int64_t>(order.size()), 1, [&](int64_t t_lo, int64_t t_hi) {
      std::vector<float> acc(kQueryGroup * kAssemblyWidth), v(kAssemblyWidth), head_w(heads);
      std::vector<const float*> head_z(heads);
      std::vector<RowCandidates> cand[kQueryGroup];
      const int64_t prune_at = 4 * keep + kAssemblyWidth;
      for (int64_t t = t_lo; t < t_hi; ++t) {
        // A group of consecutive queries: each head projection row is read once for all of them (from
        // cache), not once per query, which is what bounds the assembly.
        const int64_t q_first = order[t], q_last = std::min(req.q_end, q_first + kQueryGroup);
        const int64_t members = q_last - q_first;
        bool finite[kQueryGroup];
        for (int64_t g = 0; g < members; ++g) {
          const int64_t row0 = rows_of_prompt(q_first + g) - row_base, steps = steps_of_query(q_first + g);
          finite[g] = true;
          cand[g].resize(steps);
          for (int64_t s = 0; s < steps; ++s) {
            RowCandidates& row = cand[g][s];
            row.list.clear();
            row.bound = 0.0f;
            if (first_block) continue;
            const int32_t* prev_i = indices + (row0 + s) * k;  // the best so far, from earlier column blocks
            const float* prev_v = values + (row0 + s) * k;
            for (int64_t i = 0; i < keep && prev_i[i] >= 0; ++i) row.list.emplace_back(prev_v[i], prev_i[i]);
            row.cut(keep);  // a full list's last value is already a bound for this block's features
          }
        }
        const float* bias_row = pz + Layout::kBias * width;
        for (int64_t f0 = 0; f0 < width; f0 += kAssemblyWidth) {
          const int64_t w_len = std::min(kAssemblyWidth, width - f0);
          const auto feature0 = static_cast<int32_t>(c0 + f0);
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int64_t g = 0; g < members; ++g) {
            const int64_t q = q_first + g, row0 = rows_of_prompt(q) - row_base;
            finite[g] &= assemble(v.data(), pz + layout.resid(q) * width + f0, acc.data() + g * kAssemblyWidth,
                                  bias_row + f0, pbeta + f0, scalars[row0], w_len);
            collect(v.data(), pthr + f0, w_len, feature0, cand[g][0], keep, prune_at);
          }
          for (int64_t j = 0; j < q_last; ++j) {
            for (int64_t g = std::max<int64_t>(0, j - q_first); g < members; ++g) {  // queries q >= j
              const int64_t q = q_first + g, row0 = rows_of_prompt(q) - row_base;
              int64_t live = 0;  // heads that attend from q to j (sliding windows leave some out)
              for (int64_t h = 0; h < heads; ++h) {
                const float weight = a[(h * n + q) * n + j];
                if (weight == 0.0f) continue;
                head_w[live] = weight;
                head_z[live++] = pz + layout.head(j, h) * width + f0;
              }
              float* acc_q = acc.data() + g * kAssemblyWidth;
              add_heads(acc_q, head_z.data(), head_w.data(), live, w_len);
              finite[g] &= assemble(v.data(), pz + layout.resid(q) * width + f0, acc_q, bias_row + f0, pbeta + f0,
                                    scalars[row0 + j + 1], w_len);
              collect(v.data(), pthr + f0, w_len, feature0, cand[g][j + 1], keep, prune_at);
            }
          }
        }
        for (int64_t g = 0; g < members; ++g) {
          const int64_t q = q_first + g, row0 = rows_of_prompt(q) - row_base;
          if (!finite[g]) {
            int64_t seen = first_bad.load();
            while (q < seen && !first_bad.compare_exchange_weak(seen, q)) {
            }
          }
          for (int64_t s = 0; s < steps_of_query(q); ++s) {
            write_ranked(cand[g][s].list, keep, k, indices + (row0 + s) * k, values + (row0 + s) * k);
          }
        }
      }
    });
    t_assemble += seconds_since(t0);
  }
  if (times) {
    times->decompose += t_decompose;
    times->encode += t_encode;
    times->topk += t_assemble;
  }
  if (first_bad.load() != std::numeric_limits<int64_t>::max()) {
    throw_non_finite(req.q_begin, req.q_end - 1, first_bad.load());
  }
}

}  // namespace saetraj::sweep
