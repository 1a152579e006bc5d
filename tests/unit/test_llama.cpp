// Llama loading and forward pass on a small checkpoint written here (q/k/v/o biases, untied lm_head,
// grouped-query attention, llama3 RoPE scaling with all three frequency bands in use), checked against
// an independent naive double-precision implementation and against the method's invariants.
// Tolerance: 1e-4 relative to max(1, |value|).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/llama.h"
#include "saetraj/model/model.h"
#include "saetraj/sweep/decompose.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/output/h5.h"
#include "saetraj/pipeline/sweep_runner.h"
#include "saetraj/sae/sae_source.h"
#include "saetraj/synth/synth.h"
#include "saetraj/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace saetraj;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kD = 24, kH = 4, kKv = 2, kHd = 8, kM = 48, kVocab = 50, kLayers = 2;

// head_dim 8 gives wavelengths 6.3, 63, 628, 6283: with original_max_position 64, low_freq_factor 1
// and high_freq_factor 4 the first is kept, the second blended, the last two divided by the factor.
std::string config_json(bool tie, bool scaling, const std::string& act = "silu") {
  std::string j = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 24,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "intermediate_size": 48, "vocab_size": 50, "max_position_embeddings": 32, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "attention_bias": true, "mlp_bias": false, "hidden_act": ")" +
                  act + R"(",
    "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": )" +
                  (tie ? "true" : "false");
  if (scaling) {
    j += R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 64})";
  }
  return j + "}";
}

std::vector<std::pair<std::string, torch::Tensor>> weights(bool with_lm_head) {
  torch::manual_seed(7);
  auto r = [](std::vector<int64_t> shape, double std) { return torch::randn(shape) * std; };
  std::vector<std::pair<std::string, torch::Tensor>> w;
  w.emplace_back("model.embed_tokens.weight", r({kVocab, kD}, 1.0));
  w.emplace_back("model.norm.weight", 1 + r({kD}, 0.1));
  if (with_lm_head) w.emplace_back("lm_head.weight", r({kVocab, kD}, 0.5));
  const double s = 1.0 / std::sqrt(double(kD));
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.emplace_back(p + "input_layernorm.weight", 1 + r({kD}, 0.1));
    w.emplace_back(p + "self_attn.q_proj.weight", r({kH * kHd, kD}, 2 * s));
    w.emplace_back(p + "self_attn.q_proj.bias", r({kH * kHd}, 0.1));
    w.emplace_back(p + "self_attn.k_proj.weight", r({kKv * kHd, kD}, 2 * s));
    w.emplace_back(p + "self_attn.k_proj.bias", r({kKv * kHd}, 0.1));
    w.emplace_back(p + "self_attn.v_proj.weight", r({kKv * kHd, kD}, s));
    w.emplace_back(p + "self_attn.v_proj.bias", r({kKv * kHd}, 0.1));
    w.emplace_back(p + "self_attn.o_proj.weight", r({kD, kH * kHd}, 1.0 / std::sqrt(double(kH * kHd))));
    w.emplace_back(p + "self_attn.o_proj.bias", r({kD}, 0.1));
    w.emplace_back(p + "post_attention_layernorm.weight", 1 + r({kD}, 0.1));
    w.emplace_back(p + "mlp.gate_proj.weight", r({kM, kD}, s));
    w.emplace_back(p + "mlp.up_proj.weight", r({kM, kD}, s));
    w.emplace_back(p + "mlp.down_proj.weight", r({kD, kM}, 1.0 / std::sqrt(double(kM))));
  }
  return w;
}

void write_checkpoint(const std::string& dir, const std::string& config,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  saetraj::testing::write_file(dir + "/config.json", config);
  io::write_safetensors(dir + "/model.safetensors", tensors);
}

const std::string& checkpoint() {
  static saetraj::testing::TempDir dir("saetraj-llama");
  static const bool written = (write_checkpoint(dir.path(), config_json(false, true), weights(true)), true);
  (void)written;
  return dir.path();
}

const std::vector<int32_t> kIds = {1, 7, 33, 12, 49, 3, 3, 20, 41, 8, 15, 26};

using Matrix = std::vector<std::vector<double>>;
std::vector<double> vec(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

struct Naive {
  std::vector<Matrix> resid_pre, resid_mid, resid_post;
  std::vector<double> logits_last;
};

// Llama written out from the transformers definition, in double, with the llama3 frequency rule.
Naive naive_forward(const io::SafetensorsSet& w, const std::vector<int32_t>& ids, bool scaling) {
  const int64_t n = ids.size();
  auto get = [&](const std::string& name) { return vec(w.load(name)); };
  auto rms = [&](const std::vector<double>& v, const std::vector<double>& g) {
    double ms = 0;
    for (double a : v) ms += a * a;
    const double inv = 1.0 / std::sqrt(ms / v.size() + 1e-5);
    std::vector<double> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = v[i] * inv * g[i];
    return out;
  };
  auto linear = [](const std::vector<double>& v, const std::vector<double>& W, const std::vector<double>* b,
                   int64_t in, int64_t out) {
    std::vector<double> y(out, 0.0);
    for (int64_t o = 0; o < out; ++o) {
      if (b) y[o] = (*b)[o];
      for (int64_t i = 0; i < in; ++i) y[o] += W[o * in + i] * v[i];
    }
    return y;
  };
  std::vector<double> freq(kHd / 2);
  for (int64_t i = 0; i < kHd / 2; ++i) {
    const double f = std::pow(10000.0, -2.0 * i / kHd), wavelen = 2 * M_PI / f;
    if (!scaling || wavelen < 64.0 / 4.0) {
      freq[i] = f;
    } else if (wavelen > 64.0 / 1.0) {
      freq[i] = f / 8.0;
    } else {
      const double smooth = (64.0 / wavelen - 1.0) / (4.0 - 1.0);
      freq[i] = (1 - smooth) * f / 8.0 + smooth * f;
    }
  }
  auto rope = [&](std::vector<double>& x, int64_t offset, int64_t pos) {
    for (int64_t i = 0; i < kHd / 2; ++i) {
      const double a = x[offset + i], b = x[offset + i + kHd / 2], angle = pos * freq[i];
      x[offset + i] = a * std::cos(angle) - b * std::sin(angle);
      x[offset + i + kHd / 2] = b * std::cos(angle) + a * std::sin(angle);
    }
  };
  const auto embed = get("model.embed_tokens.weight");
  Matrix x(n, std::vector<double>(kD));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t e = 0; e < kD; ++e) x[i][e] = embed[ids[i] * kD + e];
  Naive r;
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    r.resid_pre.push_back(x);
    const auto wq = get(p + "self_attn.q_proj.weight"), bq = get(p + "self_attn.q_proj.bias");
    const auto wk = get(p + "self_attn.k_proj.weight"), bk = get(p + "self_attn.k_proj.bias");
    const auto wv = get(p + "self_attn.v_proj.weight"), bv = get(p + "self_attn.v_proj.bias");
    const auto wo = get(p + "self_attn.o_proj.weight"), bo = get(p + "self_attn.o_proj.bias");
    Matrix q(n), k(n), v(n);
    for (int64_t i = 0; i < n; ++i) {
      const auto normed = rms(x[i], get(p + "input_layernorm.weight"));
      q[i] = linear(normed, wq, &bq, kD, kH * kHd);
      k[i] = linear(normed, wk, &bk, kD, kKv * kHd);
      v[i] = linear(normed, wv, &bv, kD, kKv * kHd);
      for (int64_t hh = 0; hh < kH; ++hh) rope(q[i], hh * kHd, i);
      for (int64_t hh = 0; hh < kKv; ++hh) rope(k[i], hh * kHd, i);
    }
    Matrix z(n, std::vector<double>(kH * kHd, 0.0));
    for (int64_t hh = 0; hh < kH; ++hh) {
      const int64_t g = hh / (kH / kKv);
      for (int64_t qi = 0; qi < n; ++qi) {
        std::vector<double> s(qi + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= qi; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < kHd; ++e) dot += q[qi][hh * kHd + e] * k[j][g * kHd + e];
          s[j] = dot / std::sqrt(double(kHd));
          mx = std::max(mx, s[j]);
        }
        for (auto& a : s) sum += (a = std::exp(a - mx));
        for (int64_t j = 0; j <= qi; ++j)
          for (int64_t e = 0; e < kHd; ++e) z[qi][hh * kHd + e] += s[j] / sum * v[j][g * kHd + e];
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const auto a = linear(z[i], wo, &bo, kH * kHd, kD);
      for (int64_t e = 0; e < kD; ++e) x[i][e] += a[e];
    }
    r.resid_mid.push_back(x);
    const auto wg = get(p + "mlp.gate_proj.weight"), wu = get(p + "mlp.up_proj.weight");
    const auto wd = get(p + "mlp.down_proj.weight");
    for (int64_t i = 0; i < n; ++i) {
      const auto in = rms(x[i], get(p + "post_attention_layernorm.weight"));
      auto gate = linear(in, wg, nullptr, kD, kM);
      const auto up = linear(in, wu, nullptr, kD, kM);
      for (int64_t e = 0; e < kM; ++e) gate[e] = gate[e] / (1 + std::exp(-gate[e])) * up[e];
      const auto out = linear(gate, wd, nullptr, kM, kD);
      for (int64_t e = 0; e < kD; ++e) x[i][e] += out[e];
    }
    r.resid_post.push_back(x);
  }
  const auto normed = rms(x[n - 1], get("model.norm.weight"));
  const auto head = get("lm_head.weight");
  r.logits_last.assign(kVocab, 0.0);
  for (int64_t t = 0; t < kVocab; ++t)
    for (int64_t e = 0; e < kD; ++e) r.logits_last[t] += normed[e] * head[t * kD + e];
  return r;
}

double tol(double ref) { return 1e-4 * std::max(1.0, std::abs(ref)); }

}  // namespace

TEST(Llama, ForwardMatchesNaiveImplementation) {
  const auto m = model::load_model(checkpoint());
  EXPECT_STREQ(model::arch_name(m->config().arch), "LlamaForCausalLM");
  EXPECT_EQ(m->config().params<model::LlamaParams>().rope.type, "llama3");
  const auto cap = m->forward(kIds, {});
  const auto ref = naive_forward(io::SafetensorsSet::open_folder(checkpoint()), kIds, true);
  const int64_t n = kIds.size();
  for (int l = 0; l < kLayers; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t e = 0; e < kD; ++e) {
        EXPECT_NEAR(cap.layers[l].resid_pre[i][e].item<float>(), ref.resid_pre[l][i][e],
                    tol(ref.resid_pre[l][i][e]));
        EXPECT_NEAR(cap.layers[l].resid_mid[i][e].item<float>(), ref.resid_mid[l][i][e],
                    tol(ref.resid_mid[l][i][e]));
        EXPECT_NEAR(cap.layers[l].resid_post[i][e].item<float>(), ref.resid_post[l][i][e],
                    tol(ref.resid_post[l][i][e]));
      }
    }
  }
  for (int64_t t = 0; t < kVocab; ++t)
    EXPECT_NEAR(cap.logits[n - 1][t].item<float>(), ref.logits_last[t], tol(ref.logits_last[t]));
}

TEST(Llama, Llama3ScalingChangesTheModelAndDefaultRopeMatchesToo) {
  saetraj::testing::TempDir dir;
  write_checkpoint(dir.path(), config_json(false, false), weights(true));
  const auto plain = model::load_model(dir.path());
  const auto scaled = model::load_model(checkpoint());
  const auto a = plain->forward(kIds, {}).logits, b = scaled->forward(kIds, {}).logits;
  EXPECT_GT((a - b).abs().max().item<float>(), 1e-3);
  const auto ref = naive_forward(io::SafetensorsSet::open_folder(dir.path()), kIds, false);
  for (int64_t t = 0; t < kVocab; ++t)
    EXPECT_NEAR(a[kIds.size() - 1][t].item<float>(), ref.logits_last[t], tol(ref.logits_last[t]));
}

TEST(Llama, GroupedQueryHeadsAndMethodInvariants) {
  const auto m = model::load_model(checkpoint());
  EXPECT_FALSE(m->has_post_attention_norm());
  const auto cap = m->forward(kIds, {});
  const auto w = io::SafetensorsSet::open_folder(checkpoint());
  const int64_t n = kIds.size();
  for (int l = 0; l < kLayers; ++l) {
    const auto& lc = cap.layers[l];
    ASSERT_EQ(lc.values.sizes(), (std::vector<int64_t>{kKv, n, kHd}));
    const auto o = w.load("model.layers." + std::to_string(l) + ".self_attn.o_proj.weight");
    const auto out = m->head_outputs(l, lc.values);
    for (int64_t hq = 0; hq < kH; ++hq) {
      EXPECT_TRUE(torch::allclose(
          out[hq], torch::matmul(lc.values[hq / 2], o.slice(1, hq * kHd, (hq + 1) * kHd).t()), 1e-5, 1e-6));
    }
    EXPECT_TRUE(torch::equal(m->attention_output_bias(l),
                             w.load("model.layers." + std::to_string(l) + ".self_attn.o_proj.bias")));
    sweep::AttentionParts parts{lc.pattern, out, m->attention_output_bias(l)};
    const auto attn_out = lc.resid_mid - lc.resid_pre;
    for (int64_t q = 0; q < n; ++q) {
      EXPECT_TRUE(torch::allclose(sweep::source_contributions(parts, q).sum(0), attn_out[q], 1e-4, 1e-5));
    }
    const auto rows = sweep::evolution_inputs(
        lc.resid_pre, parts, [&](const torch::Tensor& x) { return m->post_attention(l, x); }, 1, n);
    for (int64_t q = 1; q < n; ++q) {
      EXPECT_TRUE(torch::allclose(rows[sweep::row_of_query(q) + q + 1], lc.resid_mid[q], 1e-4, 1e-5));
    }
  }
}

TEST(Llama, TiedEmbeddingsUnembedWithTheEmbedding) {
  saetraj::testing::TempDir dir;
  write_checkpoint(dir.path(), config_json(true, true), weights(false));
  const auto m = model::load_model(dir.path());
  const auto cap = m->forward(kIds, {});
  const auto w = io::SafetensorsSet::open_folder(dir.path());
  const auto x = cap.layers[1].resid_post;
  const auto normed = x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-5) * w.load("model.norm.weight");
  EXPECT_TRUE(torch::allclose(cap.logits, torch::matmul(normed, w.load("model.embed_tokens.weight").t()),
                              1e-4, 1e-5));
}

TEST(Llama, BadCheckpointsAreClearErrors) {
  saetraj::testing::TempDir dir;
  write_checkpoint(dir.path(), config_json(false, true), weights(false));
  EXPECT_THAT(
      [&] { model::load_model(dir.path()); },
      ThrowsMessage<FormatError>(HasSubstr("tie_word_embeddings is false but the checkpoint has no tensor "
                                           "'lm_head.weight'")));
  auto tensors = weights(true);
  tensors.erase(std::find_if(tensors.begin(), tensors.end(), [](const auto& t) {
    return t.first == "model.layers.1.self_attn.v_proj.bias";
  }));
  write_checkpoint(dir.path(), config_json(false, true), tensors);
  EXPECT_THAT([&] { model::load_model(dir.path()); },
              ThrowsMessage<FormatError>(HasSubstr("model.layers.1.self_attn.v_proj.bias")));
  tensors = weights(true);
  for (auto& [name, t] : tensors)
    if (name == "model.layers.0.mlp.down_proj.weight") t = torch::zeros({kM, kD});
  write_checkpoint(dir.path(), config_json(false, true), tensors);
  EXPECT_THAT([&] { model::load_model(dir.path()); },
              ThrowsMessage<FormatError>(HasSubstr("wrong shape; expected [24, 48], got [48, 24]")));
  write_checkpoint(dir.path(), config_json(false, true, "gelu"), weights(true));
  EXPECT_THAT([&] { model::load_model(dir.path()); },
              ThrowsMessage<InputError>(HasSubstr("hidden_act \"gelu\" is not supported")));
  EXPECT_THAT(
      [] {
        model::ModelConfig::from_json_text(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 8,
      "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 4, "intermediate_size": 8,
      "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})",
                                           "cfg");
      },
      ThrowsMessage<InputError>(HasSubstr("rope_scaling type \"yarn\" is not supported")));
}

// The synthetic Llama-3 fixture: its tokenizer is Llama-3's (pre-tokenizer, BOS added by default), its
// checkpoint loads as LlamaForCausalLM, and a sweep over it runs end to end with BOS prepended.
TEST(LlamaFixture, SynthesisedCheckpointSweepsEndToEnd) {
  saetraj::testing::TempDir dir("saetraj-llama-fx");
  saetraj::synth::SynthOptions o;
  o.out = dir.path();
  o.n_layers = 2;
  o.d_model = 32;
  o.n_heads = 4;
  o.d_mlp = 64;
  o.vocab_size = 320;
  o.n_ctx = 64;
  o.d_sae = 64;
  const auto fx = saetraj::synth::synth_llama_fixture(o);
  const auto m = saetraj::model::load_model(fx.model_dir);
  EXPECT_STREQ(saetraj::model::arch_name(m->config().arch), "LlamaForCausalLM");
  EXPECT_EQ(m->config().n_kv_heads, 2);
  EXPECT_EQ(m->config().params<saetraj::model::LlamaParams>().rope.type, "llama3");
  const auto tok = saetraj::tokenizer::load_tokenizer(fx.model_dir, m->config().bos_token_id);
  EXPECT_TRUE(tok->adds_bos_by_default());
  EXPECT_EQ(tok->bos_id(), m->config().bos_token_id);
  EXPECT_EQ(tok->decode(tok->encode("Mark gave 12345 flashlights")), "Mark gave 12345 flashlights");

  saetraj::pipeline::SweepOptions s;
  s.model = fx.model_dir;
  s.saes = {fx.sae_pattern};
  s.prompts = {"Mark gave flashlight to Max"};
  s.k = 16;
  s.out = dir.file("llama.h5");
  const auto comm = saetraj::dist::make_serial_communicator();
  const auto result = saetraj::pipeline::run_sweep(s, *comm);
  EXPECT_TRUE(result.complete);
  const saetraj::output::H5Handle f =
      saetraj::output::h5_file(H5Fopen(s.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  EXPECT_EQ(saetraj::output::read_attr_string(f, "architecture"), "LlamaForCausalLM");
  EXPECT_EQ(saetraj::output::read_attr_string(f, "bos"), "prepended");
  EXPECT_EQ(saetraj::output::read_vector<int32_t>(f, "tokens/ids")[0], *m->config().bos_token_id);
}

// ---- Qwen3 and Qwen2: the Llama-style decoder with per-head q/k norms (Qwen3) or q/k/v biases (Qwen2) ------
// Their numerics are held against transformers in tests/fidelity; here the method's invariants, that the
// q/k norms are applied, and the bias layout.

namespace {

std::string qwen_config(const std::string& arch) {
  return R"({"architectures": [")" + arch + R"("], "hidden_size": 24, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 48, "vocab_size": 50,
    "max_position_embeddings": 32, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu",
    "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2})";
}

// Llama's tensors without the o_proj bias (Qwen2), or without any bias and with q/k norms (Qwen3).
std::vector<std::pair<std::string, torch::Tensor>> qwen_weights(bool qwen3, double q_norm_scale = 1.0) {
  auto w = weights(true);
  std::erase_if(w, [&](const auto& t) {
    return t.first.ends_with("o_proj.bias") || (qwen3 && t.first.ends_with("_proj.bias"));
  });
  if (qwen3) {
    for (int l = 0; l < kLayers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
      w.emplace_back(p + "q_norm.weight", (1 + torch::randn({kHd}) * 0.3) * q_norm_scale);
      w.emplace_back(p + "k_norm.weight", 1 + torch::randn({kHd}) * 0.3);
    }
  }
  return w;
}

void expect_method_invariants(const model::Model& m) {
  const auto cap = m.forward(kIds, {});
  const int64_t n = kIds.size();
  for (int l = 0; l < kLayers; ++l) {
    const auto& lc = cap.layers[l];
    sweep::AttentionParts parts{lc.pattern, m.head_outputs(l, lc.values), m.attention_output_bias(l)};
    const auto attn_out = lc.resid_mid - lc.resid_pre;
    for (int64_t q = 0; q < n; ++q) {
      EXPECT_TRUE(torch::allclose(sweep::source_contributions(parts, q).sum(0), attn_out[q], 1e-4, 1e-5))
          << "layer " << l << " q " << q;
    }
    const auto rows = sweep::evolution_inputs(
        lc.resid_pre, parts, [&](const torch::Tensor& x) { return m.post_attention(l, x); }, 1, n);
    for (int64_t q = 1; q < n; ++q) {
      EXPECT_TRUE(torch::allclose(rows[sweep::row_of_query(q) + q + 1], lc.resid_mid[q], 1e-4, 1e-5))
          << "layer " << l << " q " << q;
    }
  }
}

}  // namespace

TEST(Qwen3, MethodInvariantsAndQueryKeyNorms) {
  saetraj::testing::TempDir dir;
  write_checkpoint(dir.path(), qwen_config("Qwen3ForCausalLM"), qwen_weights(true));
  const auto m = model::load_model(dir.path());
  EXPECT_STREQ(model::arch_name(m->config().arch), "Qwen3ForCausalLM");
  EXPECT_TRUE(m->config().params<model::LlamaParams>().qk_norm);
  EXPECT_FALSE(m->attention_output_bias(0).defined());
  expect_method_invariants(*m);
  // RMSNorm makes each query head scale-free: scaling q_norm's weight by 3 scales the scores by 3, so the
  // patterns change, while the values (and so the head outputs) do not.
  saetraj::testing::TempDir scaled;
  write_checkpoint(scaled.path(), qwen_config("Qwen3ForCausalLM"), qwen_weights(true, 3.0));
  const auto a = m->forward(kIds, {0}).layers[0];
  const auto b = model::load_model(scaled.path())->forward(kIds, {0}).layers[0];
  EXPECT_TRUE(torch::allclose(a.values, b.values));
  EXPECT_FALSE(torch::allclose(a.pattern, b.pattern, 1e-3, 1e-3));
  // Missing norms are named.
  auto w = qwen_weights(true);
  std::erase_if(w, [](const auto& t) { return t.first == "model.layers.1.self_attn.k_norm.weight"; });
  write_checkpoint(dir.path(), qwen_config("Qwen3ForCausalLM"), w);
  EXPECT_THAT([&] { model::load_model(dir.path()); },
              ThrowsMessage<FormatError>(HasSubstr("model.layers.1.self_attn.k_norm.weight")));
}

TEST(Qwen2, QkvBiasesWithoutOutputBiasAndMethodInvariants) {
  saetraj::testing::TempDir dir;
  write_checkpoint(dir.path(), qwen_config("Qwen2ForCausalLM"), qwen_weights(false));
  const auto m = model::load_model(dir.path());
  EXPECT_STREQ(model::arch_name(m->config().arch), "Qwen2ForCausalLM");
  const auto& p = m->config().params<model::LlamaParams>();
  EXPECT_TRUE(p.qkv_bias);
  EXPECT_FALSE(p.o_bias);
  EXPECT_FALSE(m->attention_output_bias(1).defined());
  // The value bias is inside the captured values: v = normed @ W_v^T + b_v.
  const auto cap = m->forward(kIds, {});
  const auto w = io::SafetensorsSet::open_folder(dir.path());
  const auto x = cap.layers[0].resid_pre;
  const auto normed = x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-6) * w.load("model.layers.0.input_layernorm.weight");
  const auto v = torch::addmm(w.load("model.layers.0.self_attn.v_proj.bias"), normed,
                              w.load("model.layers.0.self_attn.v_proj.weight").t());
  EXPECT_TRUE(torch::allclose(cap.layers[0].values, v.view({-1, kKv, kHd}).transpose(0, 1), 1e-5, 1e-6));
  expect_method_invariants(*m);
  auto missing = qwen_weights(false);
  std::erase_if(missing, [](const auto& t) { return t.first == "model.layers.0.self_attn.k_proj.bias"; });
  write_checkpoint(dir.path(), qwen_config("Qwen2ForCausalLM"), missing);
  EXPECT_THAT([&] { model::load_model(dir.path()); },
              ThrowsMessage<FormatError>(HasSubstr("model.layers.0.self_attn.k_proj.bias")));
}

// The synthetic Qwen3 fixture (saetraj synth --arch qwen3): the checkpoint loads as Qwen3ForCausalLM with q/k
// norms and tied embeddings; its tokenizer adds no BOS and config.json's bos_token_id is <|endoftext|>, as
// Qwen3-1.7B-Base's; its SAEs are SAE-Lens TopK folders whose encoding is the k largest positive
// pre-activations x W_enc + b_enc (computed here in double); a sweep prepends <|endoftext|> (the SAEs'
// prepend_bos) and runs end to end.
TEST(Qwen3Fixture, SynthesisedCheckpointSweepsEndToEnd) {
  saetraj::testing::TempDir dir("saetraj-qwen3-fx");
  synth::SynthOptions o;
  o.out = dir.path();
  o.n_layers = 2;
  o.d_model = 32;
  o.n_heads = 4;
  o.head_dim = 16;  // Qwen3's head_dim is not d_model / heads
  o.d_mlp = 64;
  o.vocab_size = 320;
  o.n_ctx = 64;
  o.d_sae = 64;
  o.topk_k = 5;
  const auto fx = synth::synth_qwen3_fixture(o);
  const auto m = model::load_model(fx.model_dir);
  EXPECT_STREQ(model::arch_name(m->config().arch), "Qwen3ForCausalLM");
  EXPECT_EQ(m->config().n_kv_heads, 2);
  EXPECT_EQ(m->config().head_dim, 16);
  EXPECT_TRUE(m->config().tie_word_embeddings);
  EXPECT_TRUE(m->config().params<model::LlamaParams>().qk_norm);
  const auto tok = tokenizer::load_tokenizer(fx.model_dir, m->config().bos_token_id);
  EXPECT_FALSE(tok->adds_bos_by_default());
  ASSERT_TRUE(m->config().bos_token_id.has_value());
  EXPECT_EQ(tok->encode("<|endoftext|>"), std::vector<int32_t>{*m->config().bos_token_id});

  ASSERT_EQ(fx.sae_dirs.size(), 2u);
  EXPECT_EQ(fx.sae_dirs[1], fx.sae_pattern.substr(0, fx.sae_pattern.find("{layer}")) + "1");
  const auto sae1 = sae::load_sae(fx.sae_dirs[1], 1, {});
  EXPECT_EQ(sae1.cfg.activation, sae::Activation::TopK);
  EXPECT_EQ(sae1.cfg.topk_k, 5);
  EXPECT_FALSE(sae1.cfg.apply_b_dec_to_input);
  EXPECT_EQ(sae1.cfg.hook_layer, 1);
  const auto raw = io::SafetensorsFile::open(fx.sae_dirs[1] + "/sae_weights.safetensors");
  const auto w_enc = raw->load("W_enc", std::vector<int64_t>{32, 64}).to(torch::kDouble);
  const auto b_enc = raw->load("b_enc", std::vector<int64_t>{64}).to(torch::kDouble);
  torch::manual_seed(7);
  const auto x = torch::randn({6, 32}, torch::kDouble) * 3.0;
  const auto got = sae1.encode(x.to(torch::kFloat)).to(torch::kDouble);
  for (int64_t r = 0; r < 6; ++r) {
    const auto pre = torch::matmul(x[r], w_enc) + b_enc;
    const auto [vals, idx] = pre.topk(5);
    auto want = torch::zeros({64}, torch::kDouble);
    for (int j = 0; j < 5; ++j) {
      if (vals[j].item<double>() > 0) want[idx[j].item<int64_t>()] = vals[j];
    }
    EXPECT_GT((want != 0).sum().item<int64_t>(), 0) << "row " << r << ": no positive pre-activation in the top 5";
    EXPECT_LE((got[r] != 0).sum().item<int64_t>(), 5);
    EXPECT_TRUE(torch::allclose(got[r], want, 1e-4, 1e-5)) << "row " << r;
  }

  pipeline::SweepOptions s;
  s.model = fx.model_dir;
  s.saes = {fx.sae_pattern};
  s.prompts = {"Mark gave flashlight to Max"};
  s.k = 5;
  s.out = dir.file("qwen3.h5");
  const auto comm = dist::make_serial_communicator();
  EXPECT_TRUE(pipeline::run_sweep(s, *comm).complete);
  const output::H5Handle f = output::h5_file(H5Fopen(s.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
  EXPECT_EQ(output::read_attr_string(f, "architecture"), "Qwen3ForCausalLM");
  EXPECT_EQ(output::read_attr_string(f, "bos"), "prepended");
  EXPECT_EQ(output::read_vector<int32_t>(f, "tokens/ids")[0], *m->config().bos_token_id);
}

// synth --arch qwen3 refuses a k its SAEs cannot have, before writing anything.
TEST(Qwen3Fixture, RefusesTopkLargerThanWidth) {
  saetraj::testing::TempDir dir("saetraj-qwen3-bad");
  synth::SynthOptions o;
  o.out = dir.file("fx");
  o.d_sae = 16;
  o.topk_k = 17;
  EXPECT_THAT([&] { synth::synth_qwen3_fixture(o); },
              ThrowsMessage<InputError>(HasSubstr("--topk-k must be in 1..--d-sae (16), got 17")));
  EXPECT_FALSE(fs::exists(o.out));
}
