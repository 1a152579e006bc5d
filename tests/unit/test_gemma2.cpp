// The Gemma decoder: Gemma-2 on the synthetic BF16 sharded checkpoint and Gemma-3 on a tiny checkpoint
// written below. Gemma-2 loading and forward pass checked against an
// independent naive implementation (double-precision loops written from the transformers definition) and
// against targeted properties: soft-capping, the sliding window on even layers only, grouped-query heads,
// and the method's invariants with the post-attention norm. Tolerance: 1e-4 relative to max(1, |value|)
// (float32 vs double over three layers; the BF16 weights are exact in both).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "saetraj/core/error.h"
#include "saetraj/io/npz.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/gemma.h"
#include "saetraj/model/model.h"
#include "saetraj/output/h5.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/gemma_scope.h"
#include "saetraj/sae/gemma_scope_release.h"
#include "saetraj/sweep/decompose.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/synth/synth.h"
#include "saetraj/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace saetraj;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
namespace fs = std::filesystem;

namespace {

constexpr int kWindow = 4;
constexpr double kAttnCap = 4.0, kFinalCap = 1.5;

const synth::SynthResult& fixture() {
  static saetraj::testing::TempDir dir("saetraj-gemma2");
  static const synth::SynthResult r = [] {
    synth::SynthOptions o;
    o.out = dir.path();
    o.n_layers = 3;
    o.d_model = 32;
    o.n_heads = 4;
    o.n_kv_heads = 2;
    o.head_dim = 16;  // not d_model / n_heads: head_dim must come from config.json
    o.d_mlp = 64;
    o.vocab_size = 320;
    o.n_ctx = 64;
    o.d_sae = 64;
    o.sliding_window = kWindow;
    o.attn_softcap = kAttnCap;
    o.final_softcap = kFinalCap;
    return synth::synth_gemma2_fixture(o);
  }();
  return r;
}

using Matrix = std::vector<std::vector<double>>;

std::vector<double> vec(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// Independent Gemma forward (Gemma-2, and Gemma-3 with its q/k norms, layer kinds and two RoPE bases): plain
// loops in double, every layer recorded.
struct Naive {
  std::vector<Matrix> resid_pre, resid_mid, resid_post;  // [layer][position][d]
  std::vector<std::vector<Matrix>> pattern;              // [layer][head][q][j]
  std::vector<double> logits_last;
};

Naive naive_forward(const io::SafetensorsSet& w, const model::ModelConfig& c,
                    const std::vector<int32_t>& ids, const std::string& prefix = "model.") {
  const int64_t n = ids.size(), d = c.d_model, h = c.n_heads, kv = c.n_kv_heads, hd = c.head_dim, m = c.d_mlp;
  const auto& gp = c.params<model::GemmaParams>();
  auto get = [&](const std::string& name) { return vec(w.load(name)); };
  auto rms = [&](const std::vector<double>& v, const std::vector<double>& g) {
    double ms = 0;
    for (double a : v) ms += a * a;
    const double inv = 1.0 / std::sqrt(ms / v.size() + c.norm_eps);
    std::vector<double> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = v[i] * inv * (1.0 + g[i]);
    return out;
  };
  // HF Linear: W [out, in].
  auto linear = [](const std::vector<double>& v, const std::vector<double>& W, int64_t in, int64_t out) {
    std::vector<double> y(out, 0.0);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) y[o] += W[o * in + i] * v[i];
    return y;
  };
  auto rope = [&](std::vector<double>& x, int64_t offset, int64_t pos, const model::RopeParams& rp) {
    const int64_t half = hd / 2;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = pos * std::pow(rp.theta, -2.0 * i / hd) / (rp.type == "linear" ? rp.factor : 1.0);
      const double a = x[offset + i], b = x[offset + i + half];
      x[offset + i] = a * std::cos(angle) - b * std::sin(angle);
      x[offset + i + half] = b * std::cos(angle) + a * std::sin(angle);
    }
  };
  auto cap = [](double s, double limit) { return limit > 0 ? limit * std::tanh(s / limit) : s; };

  const auto embed = get(prefix + "embed_tokens.weight");
  const double normalizer = static_cast<float>(std::sqrt(double(d)));
  Matrix x(n, std::vector<double>(d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < d; ++k) x[i][k] = embed[ids[i] * d + k] * normalizer;
  Naive r;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = prefix + "layers." + std::to_string(l) + ".";
    const bool sliding = gp.sliding[l];
    const auto& rp = sliding ? gp.rope_local : gp.rope_global;
    // Gemma-3: (1 + w) RMSNorm over each head's head_dim entries, before RoPE.
    auto head_norm = [&](std::vector<double>& x, int64_t offset, const std::vector<double>& g) {
      const std::vector<double> part(x.begin() + offset, x.begin() + offset + hd);
      const auto normed = rms(part, g);
      std::copy(normed.begin(), normed.end(), x.begin() + offset);
    };
    r.resid_pre.push_back(x);
    const auto wq = get(p + "self_attn.q_proj.weight"), wk = get(p + "self_attn.k_proj.weight");
    const auto wv = get(p + "self_attn.v_proj.weight"), wo = get(p + "self_attn.o_proj.weight");
    Matrix q(n), k(n), v(n);
    for (int64_t i = 0; i < n; ++i) {
      const auto normed = rms(x[i], get(p + "input_layernorm.weight"));
      q[i] = linear(normed, wq, d, h * hd);
      k[i] = linear(normed, wk, d, kv * hd);
      v[i] = linear(normed, wv, d, kv * hd);
      if (gp.qk_norm) {
        for (int64_t head = 0; head < h; ++head) head_norm(q[i], head * hd, get(p + "self_attn.q_norm.weight"));
        for (int64_t head = 0; head < kv; ++head) head_norm(k[i], head * hd, get(p + "self_attn.k_norm.weight"));
      }
      for (int64_t head = 0; head < h; ++head) rope(q[i], head * hd, i, rp);
      for (int64_t head = 0; head < kv; ++head) rope(k[i], head * hd, i, rp);
    }
    Matrix z(n, std::vector<double>(h * hd, 0.0));
    r.pattern.emplace_back(h, Matrix(n, std::vector<double>(n, 0.0)));
    for (int64_t head = 0; head < h; ++head) {
      const int64_t g = head / (h / kv);
      for (int64_t qi = 0; qi < n; ++qi) {
        std::vector<double> s(n, 0.0);
        std::vector<bool> visible(n, false);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= qi; ++j) {
          if (sliding && gp.sliding_window > 0 && qi - j >= gp.sliding_window) continue;
          visible[j] = true;
          double dot = 0;
          for (int64_t e = 0; e < hd; ++e) dot += q[qi][head * hd + e] * k[j][g * hd + e];
          const double scalar = gp.query_pre_attn_scalar > 0 ? gp.query_pre_attn_scalar : double(hd);
          s[j] = cap(dot / std::sqrt(scalar), gp.attn_logit_softcap);
          mx = std::max(mx, s[j]);
        }
        for (int64_t j = 0; j < n; ++j)
          if (visible[j]) sum += (s[j] = std::exp(s[j] - mx));
        for (int64_t j = 0; j < n; ++j) {
          if (!visible[j]) continue;
          r.pattern[l][head][qi][j] = s[j] / sum;
          for (int64_t e = 0; e < hd; ++e) z[qi][head * hd + e] += s[j] / sum * v[j][g * hd + e];
        }
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const auto a = rms(linear(z[i], wo, h * hd, d), get(p + "post_attention_layernorm.weight"));
      for (int64_t e = 0; e < d; ++e) x[i][e] += a[e];
    }
    r.resid_mid.push_back(x);
    const auto wg = get(p + "mlp.gate_proj.weight"), wu = get(p + "mlp.up_proj.weight");
    const auto wd = get(p + "mlp.down_proj.weight");
    for (int64_t i = 0; i < n; ++i) {
      const auto in = rms(x[i], get(p + "pre_feedforward_layernorm.weight"));
      auto gate = linear(in, wg, d, m);
      const auto up = linear(in, wu, d, m);
      for (int64_t e = 0; e < m; ++e) {
        const double u = gate[e];
        gate[e] = 0.5 * u * (1 + std::tanh(std::sqrt(2 / M_PI) * (u + 0.044715 * u * u * u))) * up[e];
      }
      const auto out = rms(linear(gate, wd, m, d), get(p + "post_feedforward_layernorm.weight"));
      for (int64_t e = 0; e < d; ++e) x[i][e] += out[e];
    }
    r.resid_post.push_back(x);
  }
  const auto normed = rms(x[n - 1], get(prefix + "norm.weight"));
  r.logits_last.assign(c.vocab_size, 0.0);
  for (int64_t t = 0; t < c.vocab_size; ++t) {
    double s = 0;
    for (int64_t e = 0; e < d; ++e) s += normed[e] * embed[t * d + e];
    r.logits_last[t] = cap(s, gp.final_logit_softcap);
  }
  return r;
}

double tol(double ref) { return 1e-4 * std::max(1.0, std::abs(ref)); }

std::vector<int32_t> prompt_ids(const model::Model& m) {
  const auto tok = tokenizer::load_tokenizer(fixture().model_dir, m.config().bos_token_id);
  auto ids = tok->encode("Mark gave flashlight to Max in the dark room");
  ids.insert(ids.begin(), *m.config().bos_token_id);
  return ids;
}

}  // namespace

TEST(Gemma2, CheckpointIsShardedBf16WithConfigFields) {
  const auto& dir = fixture().model_dir;
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir + "/tokenizer.model"));
  const auto w = io::SafetensorsSet::open_folder(dir);
  EXPECT_EQ(w.info("model.layers.1.mlp.up_proj.weight").dtype, io::DType::BF16);
  EXPECT_NE(w.file_of("model.embed_tokens.weight"), w.file_of("model.norm.weight"));
  const auto c = model::ModelConfig::from_folder(dir);
  EXPECT_STREQ(model::arch_name(c.arch), "Gemma2ForCausalLM");
  const auto& g = c.params<model::GemmaParams>();
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(g.sliding_window, kWindow);
  EXPECT_DOUBLE_EQ(g.attn_logit_softcap, kAttnCap);
  EXPECT_DOUBLE_EQ(g.final_logit_softcap, kFinalCap);
  EXPECT_DOUBLE_EQ(g.query_pre_attn_scalar, 32.0);
  EXPECT_EQ(g.sliding, (std::vector<bool>{true, false, true}));
  EXPECT_FALSE(g.qk_norm);
}

TEST(Gemma2, ForwardMatchesNaiveImplementation) {
  const auto m = model::load_model(fixture().model_dir);
  const auto& c = m->config();
  const auto ids = prompt_ids(*m);
  ASSERT_GT(static_cast<int>(ids.size()), kWindow + 3);  // the window must hide something
  const auto cap = m->forward(ids, {});
  const auto ref = naive_forward(io::SafetensorsSet::open_folder(fixture().model_dir), c, ids);
  const int64_t n = ids.size();
  for (int l = 0; l < c.n_layers; ++l) {
    const auto& lc = cap.layers[l];
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t e = 0; e < c.d_model; ++e) {
        EXPECT_NEAR(lc.resid_pre[i][e].item<float>(), ref.resid_pre[l][i][e], tol(ref.resid_pre[l][i][e]));
        EXPECT_NEAR(lc.resid_mid[i][e].item<float>(), ref.resid_mid[l][i][e], tol(ref.resid_mid[l][i][e]));
        EXPECT_NEAR(lc.resid_post[i][e].item<float>(), ref.resid_post[l][i][e], tol(ref.resid_post[l][i][e]));
      }
    }
    for (int64_t hq = 0; hq < c.n_heads; ++hq)
      for (int64_t q = 0; q < n; ++q)
        for (int64_t j = 0; j < n; ++j)
          EXPECT_NEAR(lc.pattern[hq][q][j].item<float>(), ref.pattern[l][hq][q][j], 1e-5);
  }
  for (int64_t v = 0; v < c.vocab_size; ++v) {
    EXPECT_NEAR(cap.logits[n - 1][v].item<float>(), ref.logits_last[v], tol(ref.logits_last[v]));
  }
}

TEST(Gemma2, FinalSoftCapIsTanhOfTheRawLogits) {
  const auto m = model::load_model(fixture().model_dir);
  const auto ids = prompt_ids(*m);
  const auto cap = m->forward(ids, {});
  const auto w = io::SafetensorsSet::open_folder(fixture().model_dir);
  const auto resid = cap.layers[2].resid_post;
  const auto x = resid.to(torch::kFloat64);
  const auto normed = x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-6) *
                      (1 + w.load("model.norm.weight").to(torch::kFloat64));
  const auto raw = torch::matmul(normed, w.load("model.embed_tokens.weight").to(torch::kFloat64).t());
  // The cap must bite on this fixture, or the test would not see it.
  EXPECT_GT(raw.abs().max().item<double>(), kFinalCap);
  const auto expected = torch::tanh(raw / kFinalCap) * kFinalCap;
  EXPECT_TRUE(torch::allclose(cap.logits.to(torch::kFloat64), expected, 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(m->readout(resid).to(torch::kFloat64), expected, 1e-4, 1e-5));
  EXPECT_LE(cap.logits.abs().max().item<float>(), kFinalCap);
}

TEST(Gemma2, AttentionSoftCapFlattensPatternsWhenTiny) {
  // With a cap of 1e-6 every score is tanh(s/c)*c, within 1e-6 of its sign times c: the pattern is
  // uniform over the visible keys (1/(q+1), or 1/window on sliding layers).
  saetraj::testing::TempDir dir;
  for (const auto& e : fs::directory_iterator(fixture().model_dir)) fs::copy(e.path(), dir.path());
  std::string cfg = saetraj::testing::read_file(dir.file("config.json"));
  const auto at = cfg.find("\"attn_logit_softcapping\": 4.0");
  ASSERT_NE(at, std::string::npos);
  cfg.replace(at, std::string("\"attn_logit_softcapping\": 4.0").size(), "\"attn_logit_softcapping\": 1e-06");
  saetraj::testing::write_file(dir.file("config.json"), cfg);
  const auto m = model::load_model(dir.path());
  const auto ids = prompt_ids(*m);
  const int64_t n = ids.size();
  const auto cap = m->forward(ids, {});
  for (int l = 0; l < 3; ++l) {
    for (int64_t q = 0; q < n; ++q) {
      const int64_t visible = l % 2 == 0 ? std::min<int64_t>(q + 1, kWindow) : q + 1;
      for (int64_t j = 0; j < n; ++j) {
        const bool seen = j <= q && q - j < visible;
        EXPECT_NEAR(cap.layers[l].pattern[1][q][j].item<float>(), seen ? 1.0 / visible : 0.0, 1e-5)
            << "layer " << l << " q " << q << " j " << j;
      }
    }
  }
}

TEST(Gemma2, SlidingWindowHidesFarTokensOnEvenLayersOnly) {
  EXPECT_TRUE(model::gemma2_layer_is_sliding(0));
  EXPECT_FALSE(model::gemma2_layer_is_sliding(1));
  EXPECT_TRUE(model::gemma2_layer_is_sliding(2));
  const auto m = model::load_model(fixture().model_dir);
  const auto ids = prompt_ids(*m);
  const int64_t n = ids.size();
  const auto cap = m->forward(ids, {});
  for (int l = 0; l < 3; ++l) {
    const auto& p = cap.layers[l].pattern;
    for (int64_t q = 0; q < n; ++q) {
      for (int64_t j = 0; j <= q; ++j) {
        const bool hidden = l % 2 == 0 && q - j >= kWindow;
        for (int64_t hq = 0; hq < 4; ++hq) {
          if (hidden) {
            EXPECT_EQ(p[hq][q][j].item<float>(), 0.0f) << "layer " << l << " q " << q << " j " << j;
          } else {
            EXPECT_GT(p[hq][q][j].item<float>(), 0.0f) << "layer " << l << " q " << q << " j " << j;
          }
        }
      }
    }
  }
}

TEST(Gemma2, GroupedQueryHeadsShareTheirKeyValueHead) {
  const auto m = model::load_model(fixture().model_dir);
  const auto ids = prompt_ids(*m);
  const int64_t n = ids.size();
  const auto cap = m->forward(ids, {});
  const auto w = io::SafetensorsSet::open_folder(fixture().model_dir);
  for (int l = 0; l < 3; ++l) {
    const auto& values = cap.layers[l].values;
    ASSERT_EQ(values.sizes(), (std::vector<int64_t>{2, n, 16}));
    const auto o = w.load("model.layers." + std::to_string(l) + ".self_attn.o_proj.weight");  // [32, 64]
    const auto out = m->head_outputs(l, values);
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{4, n, 32}));
    for (int64_t hq = 0; hq < 4; ++hq) {
      // Query heads 2g and 2g+1 read key/value head g; W_O[h] = o_proj[:, h*hd:(h+1)*hd]^T.
      const auto expected = torch::matmul(values[hq / 2], o.slice(1, hq * 16, (hq + 1) * 16).t());
      EXPECT_TRUE(torch::allclose(out[hq], expected, 1e-5, 1e-6)) << "layer " << l << " head " << hq;
    }
    // The two heads of a group attend differently (their queries differ) yet read the same values.
    EXPECT_FALSE(torch::allclose(cap.layers[l].pattern[0], cap.layers[l].pattern[1], 1e-3, 1e-3));
  }
}

TEST(Gemma2, MethodInvariantsOnEveryLayerAndQuery) {
  const auto m = model::load_model(fixture().model_dir);
  EXPECT_TRUE(m->has_post_attention_norm());
  {
    // The norm as data (what ranks without the model apply) is the model's own post-attention norm.
    const auto probe = torch::randn({5, m->config().d_model});
    for (int l = 0; l < m->config().n_layers; ++l) {
      const auto norm = m->post_attention_norm(l);
      EXPECT_TRUE(norm.enabled);
      EXPECT_TRUE(torch::allclose(norm.apply(probe), m->post_attention(l, probe), 1e-6, 1e-6));
    }
  }
  const auto ids = prompt_ids(*m);
  const int64_t n = ids.size();
  const auto cap = m->forward(ids, {});
  const auto w = io::SafetensorsSet::open_folder(fixture().model_dir);
  for (int l = 0; l < m->config().n_layers; ++l) {
    const auto& lc = cap.layers[l];
    EXPECT_FALSE(m->attention_output_bias(l).defined());
    sweep::AttentionParts parts{lc.pattern, m->head_outputs(l, lc.values), m->attention_output_bias(l)};
    // The raw attention output, before the post-attention norm, recomputed from the captured pattern
    // and values with o_proj directly: z = sum_h A_h v_g(h), out = z @ o_proj^T.
    const auto o = w.load("model.layers." + std::to_string(l) + ".self_attn.o_proj.weight");
    const auto z =
        torch::matmul(lc.pattern, lc.values.repeat_interleave(2, 0)).transpose(0, 1).reshape({n, 64});
    const auto raw = torch::matmul(z, o.t());
    for (int64_t q = 0; q < n; ++q) {
      EXPECT_TRUE(torch::allclose(sweep::source_contributions(parts, q).sum(0), raw[q], 1e-4, 1e-5))
          << "layer " << l << " q " << q;
    }
    // resid_pre + post_attention(raw) is resid_mid, and so is the last partial sum of every query.
    EXPECT_TRUE(torch::allclose(lc.resid_pre + m->post_attention(l, raw), lc.resid_mid, 1e-4, 1e-5));
    const auto rows = sweep::evolution_inputs(
        lc.resid_pre, parts, [&](const torch::Tensor& x) { return m->post_attention(l, x); }, 1, n);
    for (int64_t q = 1; q < n; ++q) {
      EXPECT_TRUE(torch::allclose(rows[sweep::row_of_query(q) + q + 1], lc.resid_mid[q], 1e-4, 1e-5))
          << "layer " << l << " q " << q;
    }
  }
}

TEST(Gemma2, PostAttentionIsRowWiseGemmaRmsNorm) {
  const auto m = model::load_model(fixture().model_dir);
  const auto w = io::SafetensorsSet::open_folder(fixture().model_dir);
  const auto g = w.load("model.layers.1.post_attention_layernorm.weight").to(torch::kFloat64);
  const auto x = torch::linspace(-3, 5, 64).view({2, 32});
  const auto xd = x.to(torch::kFloat64);
  const auto expected = xd / (xd.pow(2).mean(1, true) + 1e-6).sqrt() * (1 + g);
  EXPECT_TRUE(torch::allclose(m->post_attention(1, x).to(torch::kFloat64), expected, 1e-5, 1e-6));
}

TEST(Gemma2, OneForwardServesEveryPrefix) {
  const auto m = model::load_model(fixture().model_dir);
  const auto ids = prompt_ids(*m);
  const auto full = m->forward(ids, {2});
  const std::vector<int32_t> prefix(ids.begin(), ids.begin() + 6);
  const auto part = m->forward(prefix, {2});
  EXPECT_FALSE(full.layers[0].resid_mid.defined());
  EXPECT_TRUE(torch::allclose(part.layers[2].resid_mid, full.layers[2].resid_mid.slice(0, 0, 6), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(part.logits, full.logits.slice(0, 0, 6), 1e-4, 1e-4));
}

TEST(Gemma2, MissingTensorAndWrongShapeAreClearErrors) {
  saetraj::testing::TempDir dir;
  fs::copy_file(fixture().model_dir + "/config.json", dir.file("config.json"));
  const auto src = io::SafetensorsSet::open_folder(fixture().model_dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& name : src.names()) {
    if (name != "model.layers.2.pre_feedforward_layernorm.weight") tensors.emplace_back(name, src.load(name));
  }
  io::write_safetensors(dir.file("model.safetensors"), tensors);
  EXPECT_THAT(
      [&] { model::load_model(dir.path()); },
      ::testing::ThrowsMessage<FormatError>(HasSubstr("model.layers.2.pre_feedforward_layernorm.weight")));
  for (auto& [name, t] : tensors) {
    if (name == "model.layers.0.self_attn.k_proj.weight") t = torch::zeros({64, 32});  // n_heads, not n_kv
  }
  tensors.emplace_back("model.layers.2.pre_feedforward_layernorm.weight", torch::zeros({32}));
  io::write_safetensors(dir.file("model.safetensors"), tensors);
  EXPECT_THAT(
      [&] { model::load_model(dir.path()); },
      ::testing::ThrowsMessage<FormatError>(HasSubstr("wrong shape; expected [32, 32], got [64, 32]")));
}

TEST(Gemma2, UnsupportedActivationAndLongPromptAreRefused) {
  saetraj::testing::TempDir dir;
  for (const auto& e : fs::directory_iterator(fixture().model_dir)) fs::copy(e.path(), dir.path());
  std::string cfg = saetraj::testing::read_file(dir.file("config.json"));
  for (size_t at; (at = cfg.find("gelu_pytorch_tanh")) != std::string::npos;) cfg.replace(at, 17, "relu");
  saetraj::testing::write_file(dir.file("config.json"), cfg);
  EXPECT_THAT([&] { model::load_model(dir.path()); },
              ::testing::ThrowsMessage<InputError>(HasSubstr("hidden_activation \"relu\" is not supported")));
  const auto m = model::load_model(fixture().model_dir);
  EXPECT_THAT([&] { m->forward(std::vector<int32_t>(65, 2), {}); },
              ::testing::ThrowsMessage<InputError>(HasSubstr("context is 64")));
  EXPECT_THAT(
      [&] {
        m->forward({2, 100000}, {});
      },
      ::testing::ThrowsMessage<InputError>(HasSubstr("token id 100000 is outside")));
}

TEST(Gemma2, SynthSaesAreGemmaScopeReleaseTrees) {
  const auto& fx = fixture();
  EXPECT_EQ(fx.gemmascope_width, "64");
  ASSERT_EQ(fx.sae_dirs.size(), 3u);
  const auto m = model::load_model(fx.model_dir);
  const auto ids = prompt_ids(*m);
  const auto cap = m->forward(ids, {});
  for (int l = 0; l < 3; ++l) {
    // Two sparsities per layer; the sparser one (closest to L0 = 0) is the one sae_dirs names.
    const std::string width_dir = fx.gemmascope_root + "/layer_" + std::to_string(l) + "/width_64";
    EXPECT_EQ(std::distance(fs::directory_iterator(width_dir), fs::directory_iterator()), 2);
    EXPECT_EQ(sae::resolve_gemma_scope(fx.gemmascope_root, l, "64", 0.0), fx.sae_dirs[l]);
    const auto npz = io::NpzFile::open(fx.sae_dirs[l] + "/params.npz");
    EXPECT_EQ(npz.names(), (std::vector<std::string>{"W_dec", "W_enc", "b_dec", "b_enc", "threshold"}));
    const auto s = sae::load_gemma_scope(fx.sae_dirs[l], {"saetraj-demo-gemma2", std::nullopt});
    EXPECT_EQ(s.cfg.hook_layer, l);
    EXPECT_EQ(s.cfg.id, "saetraj-demo-gemma2/" + std::to_string(l) + "-gemmascope-res-64");
    // The SAE reads resid_post: features fire on this prompt, some but not most of them.
    const auto active =
        (s.encode(cap.layers[l].resid_post) > 0).sum(1).to(torch::kFloat64).mean().item<double>();
    EXPECT_GT(active, 0.0);
    EXPECT_LT(active, 32.0);
    const auto explanations = fx.explanations_root + "/saetraj-demo-gemma2/" + std::to_string(l) +
                              "-gemmascope-res-64/explanations/batch-0.jsonl.gz";
    EXPECT_TRUE(fs::exists(explanations)) << explanations;
  }
}

TEST(Gemma2, SynthRefusesBadShapes) {
  synth::SynthOptions o;
  EXPECT_THAT([&] { synth::synth_gemma2_fixture(o); },
              ::testing::ThrowsMessage<InputError>(HasSubstr("needs an output folder")));
  saetraj::testing::TempDir dir;
  o.out = dir.path();
  o.n_heads = 4;
  o.n_kv_heads = 3;
  EXPECT_THAT([&] { synth::synth_gemma2_fixture(o); },
              ::testing::ThrowsMessage<InputError>(HasSubstr("n_heads 4 is not a multiple of n_kv_heads 3")));
  o.n_kv_heads = 0;
  o.d_model = 30;
  EXPECT_THAT([&] { synth::synth_gemma2_fixture(o); },
              ::testing::ThrowsMessage<InputError>(HasSubstr("d_model must be a multiple of n_heads")));
}

// ---- Gemma-3 (Gemma3ForCausalLM and the text model of Gemma3ForConditionalGeneration) -------------------
// A tiny checkpoint written here: layer kinds in an irregular pattern, a local RoPE base far from the global
// one, linear RoPE scaling on the full layer, random q/k norms. Held against the naive forward above, which
// follows transformers' Gemma3Attention (q/k norm before RoPE, a RoPE table per layer kind).

namespace {

constexpr int64_t kG3Layers = 4, kG3D = 24, kG3H = 4, kG3Kv = 2, kG3Hd = 8, kG3M = 40, kG3Vocab = 60;
constexpr int kG3Window = 3;

std::string gemma3_text_fields() {
  return R"("hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 60, "max_position_embeddings": 64,
    "query_pre_attn_scalar": 12, "sliding_window": 3, "rms_norm_eps": 1e-6,
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
    "rope_theta": 1000000.0, "rope_local_base_freq": 10.0, "rope_scaling": {"rope_type": "linear", "factor": 4.0},
    "bos_token_id": 2, "eos_token_id": 1)";
}

std::vector<std::pair<std::string, torch::Tensor>> gemma3_weights(const std::string& prefix) {
  torch::manual_seed(31);
  auto r = [](std::vector<int64_t> shape, double std) { return torch::randn(shape) * std; };
  std::vector<std::pair<std::string, torch::Tensor>> w;
  w.emplace_back(prefix + "embed_tokens.weight", r({kG3Vocab, kG3D}, 0.5));
  w.emplace_back(prefix + "norm.weight", r({kG3D}, 0.3));
  const double s = 1.0 / std::sqrt(double(kG3D));
  for (int l = 0; l < kG3Layers; ++l) {
    const std::string p = prefix + "layers." + std::to_string(l) + ".";
    w.emplace_back(p + "self_attn.q_proj.weight", r({kG3H * kG3Hd, kG3D}, 2 * s));
    w.emplace_back(p + "self_attn.k_proj.weight", r({kG3Kv * kG3Hd, kG3D}, 2 * s));
    w.emplace_back(p + "self_attn.v_proj.weight", r({kG3Kv * kG3Hd, kG3D}, s));
    w.emplace_back(p + "self_attn.o_proj.weight", r({kG3D, kG3H * kG3Hd}, 1.0 / std::sqrt(double(kG3H * kG3Hd))));
    w.emplace_back(p + "self_attn.q_norm.weight", r({kG3Hd}, 0.5));
    w.emplace_back(p + "self_attn.k_norm.weight", r({kG3Hd}, 0.5));
    for (const char* norm : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                             "post_feedforward_layernorm"}) {
      w.emplace_back(p + norm + ".weight", r({kG3D}, 0.3));
    }
    w.emplace_back(p + "mlp.gate_proj.weight", r({kG3M, kG3D}, s));
    w.emplace_back(p + "mlp.up_proj.weight", r({kG3M, kG3D}, s));
    w.emplace_back(p + "mlp.down_proj.weight", r({kG3D, kG3M}, 1.0 / std::sqrt(double(kG3M))));
  }
  return w;
}

void write_folder(const std::string& dir, const std::string& config,
                  const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << config;
  io::write_safetensors(dir + "/model.safetensors", tensors);
}

const std::string& gemma3_checkpoint() {
  static saetraj::testing::TempDir dir("saetraj-gemma3");
  static const std::string path = [] {
    write_folder(dir.path(), R"({"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", )" +
                                 gemma3_text_fields() + "}",
                 gemma3_weights("model."));
    return dir.path();
  }();
  return path;
}

const std::vector<int32_t> kG3Ids = {2, 17, 5, 33, 59, 8, 8, 41, 12, 0, 27, 3};

}  // namespace

TEST(Gemma3, ConfigReadsLayerKindsRopeTablesAndDefaults) {
  const auto c = model::ModelConfig::from_folder(gemma3_checkpoint());
  EXPECT_STREQ(model::arch_name(c.arch), "Gemma3ForCausalLM");
  const auto& g = c.params<model::GemmaParams>();
  EXPECT_EQ(g.sliding, (std::vector<bool>{true, false, true, true}));
  EXPECT_TRUE(g.qk_norm);
  EXPECT_EQ(g.sliding_window, kG3Window);
  EXPECT_DOUBLE_EQ(g.rope_global.theta, 1e6);
  EXPECT_EQ(g.rope_global.type, "linear");
  EXPECT_DOUBLE_EQ(g.rope_global.factor, 4.0);
  EXPECT_DOUBLE_EQ(g.rope_local.theta, 10.0);
  EXPECT_EQ(g.rope_local.type, "default");  // rope_scaling is for the full layers only
  EXPECT_DOUBLE_EQ(g.attn_logit_softcap, 0.0);
  EXPECT_DOUBLE_EQ(g.final_logit_softcap, 0.0);
  EXPECT_TRUE(c.tie_word_embeddings);
  // What transformers leaves out of a saved config takes Gemma3TextConfig's defaults (gemma-3-4b's
  // text_config lists only a few fields): 8 heads, 4 key/value heads, head_dim 256, pattern 6, window 4096.
  const auto d = model::ModelConfig::from_json_text(
      R"({"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
          "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34,
                          "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024}})",
      "4b.json");
  EXPECT_EQ(d.n_heads, 8);
  EXPECT_EQ(d.n_kv_heads, 4);
  EXPECT_EQ(d.head_dim, 256);
  EXPECT_EQ(d.vocab_size, 262208);
  EXPECT_EQ(d.bos_token_id, 2);
  const auto& dg = d.params<model::GemmaParams>();
  EXPECT_DOUBLE_EQ(dg.query_pre_attn_scalar, 256.0);
  EXPECT_EQ(dg.sliding_window, 1024);
  ASSERT_EQ(dg.sliding.size(), 34u);
  for (int l = 0; l < 34; ++l) EXPECT_EQ(dg.sliding[l], (l + 1) % 6 != 0) << l;
  EXPECT_DOUBLE_EQ(dg.rope_global.factor, 8.0);
  EXPECT_DOUBLE_EQ(dg.rope_local.theta, 10000.0);
  EXPECT_DOUBLE_EQ(dg.rope_global.theta, 1e6);
}

TEST(Gemma3, ForwardMatchesNaiveImplementation) {
  const auto m = model::load_model(gemma3_checkpoint());
  const auto& c = m->config();
  const auto cap = m->forward(kG3Ids, {});
  const auto ref = naive_forward(io::SafetensorsSet::open_folder(gemma3_checkpoint()), c, kG3Ids);
  const int64_t n = kG3Ids.size();
  for (int l = 0; l < c.n_layers; ++l) {
    const auto& lc = cap.layers[l];
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t e = 0; e < c.d_model; ++e) {
        EXPECT_NEAR(lc.resid_mid[i][e].item<float>(), ref.resid_mid[l][i][e], tol(ref.resid_mid[l][i][e]));
        EXPECT_NEAR(lc.resid_post[i][e].item<float>(), ref.resid_post[l][i][e], tol(ref.resid_post[l][i][e]));
      }
    }
    for (int64_t hq = 0; hq < c.n_heads; ++hq)
      for (int64_t q = 0; q < n; ++q)
        for (int64_t j = 0; j < n; ++j)
          EXPECT_NEAR(lc.pattern[hq][q][j].item<float>(), ref.pattern[l][hq][q][j], 1e-5) << l << " " << hq;
    // Sliding layers hide keys window or more positions back; the full layer does not.
    EXPECT_EQ(lc.pattern[0][n - 1][0].item<float>() == 0.0f, l != 1) << "layer " << l;
  }
  for (int64_t v = 0; v < c.vocab_size; ++v) {
    EXPECT_NEAR(cap.logits[n - 1][v].item<float>(), ref.logits_last[v], tol(ref.logits_last[v]));
  }
}

TEST(Gemma3, MethodInvariantsOnEveryLayerAndQuery) {
  const auto m = model::load_model(gemma3_checkpoint());
  ASSERT_TRUE(m->has_post_attention_norm());
  const int64_t n = kG3Ids.size();
  const auto cap = m->forward(kG3Ids, {});
  const auto w = io::SafetensorsSet::open_folder(gemma3_checkpoint());
  for (int l = 0; l < kG3Layers; ++l) {
    const auto& lc = cap.layers[l];
    sweep::AttentionParts parts{lc.pattern, m->head_outputs(l, lc.values), m->attention_output_bias(l)};
    const auto o = w.load("model.layers." + std::to_string(l) + ".self_attn.o_proj.weight");
    const auto z = torch::matmul(lc.pattern, lc.values.repeat_interleave(kG3H / kG3Kv, 0))
                       .transpose(0, 1)
                       .reshape({n, kG3H * kG3Hd});
    const auto raw = torch::matmul(z, o.t());
    for (int64_t q = 0; q < n; ++q) {
      EXPECT_TRUE(torch::allclose(sweep::source_contributions(parts, q).sum(0), raw[q], 1e-4, 1e-5))
          << "layer " << l << " q " << q;
    }
    EXPECT_TRUE(torch::allclose(lc.resid_pre + m->post_attention(l, raw), lc.resid_mid, 1e-4, 1e-5));
    const auto norm = m->post_attention_norm(l);
    EXPECT_TRUE(torch::allclose(norm.apply(raw), m->post_attention(l, raw), 1e-6, 1e-6));
    const auto rows = sweep::evolution_inputs(
        lc.resid_pre, parts, [&](const torch::Tensor& x) { return m->post_attention(l, x); }, 1, n);
    for (int64_t q = 1; q < n; ++q) {
      EXPECT_TRUE(torch::allclose(rows[sweep::row_of_query(q) + q + 1], lc.resid_mid[q], 1e-4, 1e-5))
          << "layer " << l << " q " << q;
    }
  }
}

// The same text model inside a Gemma3ForConditionalGeneration checkpoint, in both layouts: transformers 4's
// on the Hub (language_model.model.*) and transformers 5's (model.language_model.*), with vision tensors that
// are not read.
TEST(Gemma3, TextModelOfAVisionCheckpointLoadsTheSame) {
  const auto ref = model::load_model(gemma3_checkpoint())->forward(kG3Ids, {}).logits;
  for (const std::string prefix : {"language_model.model.", "model.language_model."}) {
    saetraj::testing::TempDir dir("saetraj-gemma3-mm");
    auto tensors = gemma3_weights(prefix);
    tensors.emplace_back("vision_tower.vision_model.embeddings.patch_embedding.weight", torch::ones({4, 3, 2, 2}));
    tensors.emplace_back("multi_modal_projector.mm_input_projection_weight", torch::ones({4, kG3D}));
    write_folder(dir.path(),
                 R"({"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "text_config": {)" +
                     gemma3_text_fields() + R"(, "model_type": "gemma3_text"}, "vision_config": {"hidden_size": 4}})",
                 tensors);
    const auto m = model::load_model(dir.path());
    EXPECT_STREQ(model::arch_name(m->config().arch), "Gemma3ForConditionalGeneration");
    EXPECT_TRUE(torch::equal(m->forward(kG3Ids, {}).logits, ref)) << prefix;
  }
}

TEST(Gemma3, BadCheckpointsAreClearErrors) {
  saetraj::testing::TempDir dir("saetraj-gemma3-bad");
  const std::string config =
      R"({"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", )" + gemma3_text_fields() + "}";
  auto tensors = gemma3_weights("model.");
  std::erase_if(tensors, [](const auto& t) { return t.first == "model.layers.2.self_attn.k_norm.weight"; });
  write_folder(dir.path(), config, tensors);
  EXPECT_THAT([&] { model::load_model(dir.path()); },
              ThrowsMessage<FormatError>(HasSubstr("model.layers.2.self_attn.k_norm.weight")));
  tensors = gemma3_weights("model.");
  for (auto& [name, t] : tensors)
    if (name == "model.layers.0.self_attn.q_norm.weight") t = torch::zeros({kG3D});
  write_folder(dir.path(), config, tensors);
  EXPECT_THAT([&] { model::load_model(dir.path()); },
              ThrowsMessage<FormatError>(HasSubstr("wrong shape; expected [8], got [24]")));
  write_folder(dir.path(),
               R"({"architectures": ["Gemma3ForConditionalGeneration"], "text_config": {)" + gemma3_text_fields() + "}}",
               gemma3_weights("model."));
  EXPECT_THAT([&] { model::load_model(dir.path()); },
              ThrowsMessage<FormatError>(HasSubstr("no tensor 'model.language_model.embed_tokens.weight' or "
                                                   "'language_model.model.embed_tokens.weight'")));
  auto with = [&](const std::string& edit) {
    std::string text = config;
    text.insert(text.size() - 1, ", " + edit);
    return text;
  };
  EXPECT_THAT([&] { model::ModelConfig::from_json_text(with(R"("use_bidirectional_attention": true)"), "c.json"); },
              ThrowsMessage<InputError>(HasSubstr("c.json: use_bidirectional_attention true")));
  EXPECT_THAT([&] { model::ModelConfig::from_json_text(with(R"("attention_bias": true)"), "c.json"); },
              ThrowsMessage<InputError>(HasSubstr("c.json: attention_bias true is not supported for Gemma-3")));
  std::string yarn = config;
  yarn.replace(yarn.find("\"linear\""), 8, "\"yarn\"");
  EXPECT_THAT([&] { model::ModelConfig::from_json_text(yarn, "c.json"); },
              ThrowsMessage<InputError>(HasSubstr("c.json: rope_scaling type \"yarn\" is not supported for Gemma-3")));
  std::string kinds = config;
  kinds.replace(kinds.find("\"full_attention\""), 16, "\"chunked_attention\"");
  EXPECT_THAT([&] { model::ModelConfig::from_json_text(kinds, "c.json"); },
              ThrowsMessage<InputError>(HasSubstr("c.json: layer_types[1] is \"chunked_attention\"")));
}

// The synthetic Gemma-3 fixture (saetraj synth --arch gemma3): the checkpoint loads as Gemma3ForCausalLM with its
// layer kinds, and a sweep over it with its Gemma Scope 2-layout SAEs runs end to end.
TEST(Gemma3Fixture, SynthesisedCheckpointSweepsEndToEnd) {
  saetraj::testing::TempDir dir("saetraj-gemma3-fx");
  synth::SynthOptions o;
  o.out = dir.path();
  o.n_layers = 3;
  o.d_model = 32;
  o.n_heads = 4;
  o.head_dim = 16;
  o.d_mlp = 64;
  o.vocab_size = 320;
  o.n_ctx = 64;
  o.d_sae = 64;
  o.sliding_window = 4;
  const auto fx = synth::synth_gemma3_fixture(o);
  const auto m = model::load_model(fx.model_dir);
  EXPECT_STREQ(model::arch_name(m->config().arch), "Gemma3ForCausalLM");
  const auto& g = m->config().params<model::GemmaParams>();
  EXPECT_EQ(g.sliding, (std::vector<bool>{true, true, false}));
  EXPECT_EQ(g.sliding_window, 4);
  EXPECT_TRUE(g.qk_norm);
  ASSERT_EQ(fx.sae_dirs.size(), 3u);
  EXPECT_TRUE(fs::exists(fx.gemmascope_root + "/resid_post/layer_2_width_" + fx.gemmascope_width +
                         "_l0_big/params.safetensors"));
  pipeline::SweepOptions s;
  s.model = fx.model_dir;
  for (int l = 0; l < 3; ++l) s.saes.push_back(std::to_string(l) + "=" + fx.sae_dirs[l]);
  s.prompts = {"Mark gave flashlight to Max in the dark room"};
  s.k = 16;
  s.out = dir.file("gemma3.h5");
  const auto comm = dist::make_serial_communicator();
  EXPECT_TRUE(pipeline::run_sweep(s, *comm).complete);
  const output::H5Handle f = output::h5_file(H5Fopen(s.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  EXPECT_EQ(output::read_attr_string(f, "architecture"), "Gemma3ForCausalLM");
  EXPECT_EQ(output::read_vector<int32_t>(f, "tokens/ids")[0], 2);  // <bos>: Gemma Scope 2 SAEs were trained with it
}
