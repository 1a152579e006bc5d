// GPT-2 loading and forward pass on a synthetic checkpoint written in the Hugging Face layout, checked
// against an independent naive implementation (double precision loops) and against the method's
// invariants. Tolerance: 1e-4 absolute on values of order 1-10 (float32 vs double over a few layers).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/model/model.h"
#include "saetraj/sweep/decompose.h"
#include "saetraj/sweep/rows.h"
#include "saetraj/synth/synth.h"
#include "saetraj/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace saetraj;
namespace fs = std::filesystem;

namespace {

const synth::SynthResult& fixture() {
  static saetraj::testing::TempDir dir("saetraj-gpt2");
  static const synth::SynthResult r = [] {
    synth::SynthOptions o;
    o.out = dir.path();
    o.n_layers = 2;
    o.d_model = 16;
    o.n_heads = 2;
    o.d_mlp = 32;
    o.vocab_size = 300;
    o.n_ctx = 32;
    o.d_sae = 48;
    return synth::synth_gpt2_fixture(o);
  }();
  return r;
}

// Independent GPT-2 forward: plain loops in double.
struct Naive {
  std::vector<std::vector<double>> resid_pre, resid_mid;  // of the last layer asked
  std::vector<double> logits_last;
};

std::vector<double> vec(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

Naive naive_forward(const io::SafetensorsSet& w, const std::vector<int32_t>& ids, int64_t d, int64_t h,
                    int64_t n_layers, int64_t d_mlp, int64_t vocab, int capture_layer) {
  const int64_t n = ids.size(), hd = d / h;
  auto get = [&](const std::string& name) { return vec(w.load(name)); };
  const auto wte = get("wte.weight"), wpe = get("wpe.weight");
  std::vector<std::vector<double>> x(n, std::vector<double>(d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; ++c) x[i][c] = wte[ids[i] * d + c] + wpe[i * d + c];
  auto layer_norm = [&](const std::vector<double>& v, const std::vector<double>& g, const std::vector<double>& b) {
    double mean = 0, var = 0;
    for (double a : v) mean += a;
    mean /= d;
    for (double a : v) var += (a - mean) * (a - mean);
    var /= d;
    std::vector<double> out(d);
    for (int64_t c = 0; c < d; ++c) out[c] = (v[c] - mean) / std::sqrt(var + 1e-5) * g[c] + b[c];
    return out;
  };
  auto linear = [](const std::vector<double>& v, const std::vector<double>& W, const std::vector<double>& b,
                   int64_t in, int64_t out) {
    std::vector<double> y(b.begin(), b.end());
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) y[o] += v[i] * W[i * out + o];
    return y;
  };
  Naive result;
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    if (l == capture_layer) result.resid_pre = x;
    const auto g1 = get(p + "ln_1.weight"), b1 = get(p + "ln_1.bias");
    const auto wa = get(p + "attn.c_attn.weight"), ba = get(p + "attn.c_attn.bias");
    const auto wp = get(p + "attn.c_proj.weight"), bp = get(p + "attn.c_proj.bias");
    std::vector<std::vector<double>> qkv(n);
    for (int64_t i = 0; i < n; ++i) qkv[i] = linear(layer_norm(x[i], g1, b1), wa, ba, d, 3 * d);
    std::vector<std::vector<double>> z(n, std::vector<double>(d, 0.0));
    for (int64_t head = 0; head < h; ++head) {
      for (int64_t q = 0; q < n; ++q) {
        std::vector<double> s(q + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= q; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < hd; ++c) dot += qkv[q][head * hd + c] * qkv[j][d + head * hd + c];
          s[j] = dot / std::sqrt(double(hd));
          mx = std::max(mx, s[j]);
        }
        for (auto& v : s) sum += (v = std::exp(v - mx));
        for (int64_t j = 0; j <= q; ++j)
          for (int64_t c = 0; c < hd; ++c) z[q][head * hd + c] += s[j] / sum * qkv[j][2 * d + head * hd + c];
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const auto a = linear(z[i], wp, bp, d, d);
      for (int64_t c = 0; c < d; ++c) x[i][c] += a[c];
    }
    if (l == capture_layer) result.resid_mid = x;
    const auto g2 = get(p + "ln_2.weight"), b2 = get(p + "ln_2.bias");
    const auto wf = get(p + "mlp.c_fc.weight"), bf = get(p + "mlp.c_fc.bias");
    const auto wo = get(p + "mlp.c_proj.weight"), bo = get(p + "mlp.c_proj.bias");
    for (int64_t i = 0; i < n; ++i) {
      auto hdn = linear(layer_norm(x[i], g2, b2), wf, bf, d, d_mlp);
      for (auto& v : hdn) v = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
      const auto m = linear(hdn, wo, bo, d_mlp, d);
      for (int64_t c = 0; c < d; ++c) x[i][c] += m[c];
    }
  }
  const auto normed = layer_norm(x[n - 1], get("ln_f.weight"), get("ln_f.bias"));
  result.logits_last.assign(vocab, 0.0);
  for (int64_t v = 0; v < vocab; ++v)
    for (int64_t c = 0; c < d; ++c) result.logits_last[v] += normed[c] * wte[v * d + c];
  return result;
}

std::vector<int32_t> prompt_ids(const model::Model& m) {
  const auto tok = tokenizer::load_tokenizer(fixture().model_dir, m.config().bos_token_id);
  auto ids = tok->encode("Mark gave flashlight to Max");
  ids.insert(ids.begin(), *m.config().bos_token_id);
  return ids;
}

}  // namespace

TEST(Gpt2, ForwardMatchesNaiveImplementation) {
  const auto m = model::load_model(fixture().model_dir);
  const auto& c = m->config();
  EXPECT_STREQ(model::arch_name(c.arch), "GPT2LMHeadModel");
  EXPECT_EQ(c.n_layers, 2);
  const auto ids = prompt_ids(*m);
  ASSERT_GE(ids.size(), 4u);
  const auto cap = m->forward(ids, {});
  const auto weights = io::SafetensorsSet::open_folder(fixture().model_dir);
  const auto ref = naive_forward(weights, ids, c.d_model, c.n_heads, c.n_layers, c.d_mlp, c.vocab_size, 1);
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int64_t d = 0; d < c.d_model; ++d) {
      EXPECT_NEAR(cap.layers[1].resid_pre[i][d].item<float>(), ref.resid_pre[i][d], 1e-4);
      EXPECT_NEAR(cap.layers[1].resid_mid[i][d].item<float>(), ref.resid_mid[i][d], 1e-4);
    }
  }
  for (int64_t v = 0; v < c.vocab_size; ++v) {
    EXPECT_NEAR(cap.logits[ids.size() - 1][v].item<float>(), ref.logits_last[v], 1e-3);
  }
}

TEST(Gpt2, MethodInvariantsOnEveryLayerAndQuery) {
  const auto m = model::load_model(fixture().model_dir);
  const auto ids = prompt_ids(*m);
  const int64_t n = ids.size();
  const auto cap = m->forward(ids, {});
  for (int l = 0; l < m->config().n_layers; ++l) {
    const auto& lc = cap.layers[l];
    sweep::AttentionParts parts{lc.pattern, m->head_outputs(l, lc.values), m->attention_output_bias(l)};
    const auto attn_out = lc.resid_mid - lc.resid_pre;
    for (int64_t q = 0; q < n; ++q) {
      // sum_j a_j equals the attention output (b_O included once, spread over the sources).
      EXPECT_TRUE(torch::allclose(sweep::source_contributions(parts, q).sum(0), attn_out[q], 1e-4, 1e-5))
          << "layer " << l << " q " << q;
    }
    const auto rows = sweep::evolution_inputs(lc.resid_pre, parts, [](const torch::Tensor& x) { return x; }, 1, n);
    for (int64_t q = 1; q < n; ++q) {
      // The last partial sum plus resid_pre is resid_mid.
      EXPECT_TRUE(torch::allclose(rows[sweep::row_of_query(q) + q + 1], lc.resid_mid[q], 1e-4, 1e-5));
    }
  }
}

TEST(Gpt2, OneForwardServesEveryPrefix) {
  const auto m = model::load_model(fixture().model_dir);
  const auto ids = prompt_ids(*m);
  const auto full = m->forward(ids, {});
  const std::vector<int32_t> prefix(ids.begin(), ids.begin() + 3);
  const auto part = m->forward(prefix, {});
  EXPECT_TRUE(torch::allclose(part.layers[1].resid_mid, full.layers[1].resid_mid.slice(0, 0, 3), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(part.logits, full.logits.slice(0, 0, 3), 1e-4, 1e-4));
}

TEST(Gpt2, ReadoutOfLastLayerIsTheLogits) {
  const auto m = model::load_model(fixture().model_dir);
  const auto ids = prompt_ids(*m);
  const auto cap = m->forward(ids, {});
  const auto last = cap.layers[1].resid_post.select(0, ids.size() - 1).unsqueeze(0);
  EXPECT_TRUE(torch::allclose(m->readout(last)[0], cap.logits[ids.size() - 1], 1e-5, 1e-5));
}

TEST(Gpt2, TransformerPrefixedNamesLoadTheSameModel) {
  saetraj::testing::TempDir dir;
  const auto src = io::SafetensorsSet::open_folder(fixture().model_dir);
  std::vector<std::pair<std::string, torch::Tensor>> renamed;
  for (const auto& name : src.names()) renamed.emplace_back("transformer." + name, src.load(name));
  renamed.emplace_back("lm_head.weight", src.load("wte.weight"));
  io::write_safetensors(dir.file("model.safetensors"), renamed);
  fs::copy_file(fixture().model_dir + "/config.json", dir.file("config.json"));
  const auto a = model::load_model(fixture().model_dir);
  const auto b = model::load_model(dir.path());
  const std::vector<int32_t> ids = {1, 2, 3};
  EXPECT_TRUE(torch::equal(a->forward(ids, {}).logits, b->forward(ids, {}).logits));
}

TEST(Gpt2, MissingTensorAndWrongShapeAreClearErrors) {
  saetraj::testing::TempDir dir;
  fs::copy_file(fixture().model_dir + "/config.json", dir.file("config.json"));
  const auto src = io::SafetensorsSet::open_folder(fixture().model_dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& name : src.names()) {
    if (name != "h.1.ln_2.bias") tensors.emplace_back(name, src.load(name));
  }
  io::write_safetensors(dir.file("model.safetensors"), tensors);
  try {
    model::load_model(dir.path());
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("h.1.ln_2.bias"), std::string::npos) << e.what();
  }
  for (auto& [name, t] : tensors) {
    if (name == "h.0.attn.c_proj.weight") t = torch::zeros({16, 8});
  }
  tensors.emplace_back("h.1.ln_2.bias", torch::zeros({16}));
  io::write_safetensors(dir.file("model.safetensors"), tensors);
  try {
    model::load_model(dir.path());
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("wrong shape; expected [16, 16], got [16, 8]"), std::string::npos) << e.what();
  }
}

TEST(Gpt2, ConfigErrorsNameTheField) {
  EXPECT_THROW(
      {
        try {
          model::ModelConfig::from_json_text(R"({"architectures": ["GPT2LMHeadModel"], "n_embd": 8})", "cfg");
        } catch (const FormatError& e) {
          EXPECT_NE(std::string(e.what()).find("missing field \"n_layer\""), std::string::npos);
          throw;
        }
      },
      FormatError);
  try {
    model::ModelConfig::from_json_text(R"({"architectures": ["MambaForCausalLM"]})", "cfg");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported architecture \"MambaForCausalLM\""), std::string::npos);
  }
  EXPECT_THROW(model::ModelConfig::from_json_text("{not json", "cfg"), FormatError);
  EXPECT_THROW(model::load_model("/nonexistent/folder"), IoError);
}

TEST(Gpt2, PromptLongerThanContextIsRefused) {
  const auto m = model::load_model(fixture().model_dir);
  const std::vector<int32_t> ids(40, 1);
  try {
    m->forward(ids, {});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("context is 32"), std::string::npos) << e.what();
  }
}
