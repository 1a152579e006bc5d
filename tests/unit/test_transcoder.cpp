// MLP transcoders (sae/transcoder.h): SAE-Lens's four transcoder architectures, Gemma Scope 1 transcoders
// (params.npz) and Gemma Scope 2 transcoders (params.safetensors, with and without the affine skip term), each
// written in its published layout (synth/sae_formats.h), loaded through load_transcoder, and held to the
// published formula computed here in double precision from the raw tensors:
//   acts = act(x W_enc + b_enc)   (ReLU, or JumpReLU: pre where pre > threshold)
//   out  = acts W_dec + b_dec + x W_skip^T.
// Also: the hook check (the MLP input of the given layer -> its hook_mlp_out), the --sae refusal kept, and a
// one-line error for every bad file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/io/npz.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/sae/sae_source.h"
#include "saetraj/sae/transcoder.h"
#include "saetraj/synth/sae_formats.h"
#include "test_support.h"

using namespace saetraj;
using saetraj::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
namespace fs = std::filesystem;
using synth::RawTranscoder;

namespace {

constexpr int64_t kDin = 16, kDout = 12, kW = 80;

torch::Tensor inputs(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return (torch::randn({30, kDin}, gen) + 0.2).contiguous();
}

torch::Tensor f64(const torch::Tensor& t) { return t.to(torch::kFloat64); }

struct Expected {
  torch::Tensor acts, out;
};

Expected published(const RawTranscoder& t, const torch::Tensor& x, bool jump) {
  const auto pre = f64(x).mm(f64(t.w_enc)) + f64(t.b_enc);
  const auto acts = jump ? torch::where(pre > f64(t.threshold), pre, torch::zeros_like(pre)) : pre.relu();
  auto out = acts.mm(f64(t.w_dec)) + f64(t.b_dec);
  if (t.w_skip.defined()) out = out + f64(x).mm(f64(t.w_skip).t());
  return {acts, out};
}

void expect_matches(const sae::Transcoder& tc, const RawTranscoder& raw, bool jump, uint64_t seed) {
  const auto x = inputs(seed);
  const auto want = published(raw, x, jump);
  const auto acts = f64(tc.encode(x));
  const auto out = f64(tc.forward(x));
  const auto active = want.acts.gt(0).sum(1);
  ASSERT_GT(active.min().item<int64_t>(), 0) << "every row should have active features";
  ASSERT_LT(active.max().item<int64_t>(), kW);
  EXPECT_LT((acts - want.acts).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(acts.gt(0).sum().item<int64_t>(), want.acts.gt(0).sum().item<int64_t>());
  EXPECT_LT((out - want.out).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(tc.d_out, kDout);
  EXPECT_EQ(tc.has_skip(), raw.w_skip.defined());
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream(path) << j.dump();
}

// Rewrites the folder's sae_weights.safetensors with `change` applied to its tensor list.
template <typename F>
void rewrite_weights(const std::string& folder, F change) {
  const std::string path = folder + "/sae_weights.safetensors";
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  {
    const auto file = io::SafetensorsFile::open(path);
    for (const auto& [name, info] : file->tensors()) tensors.emplace_back(name, file->load(name));
  }
  change(tensors);
  io::write_safetensors(path, tensors);
}

}  // namespace

TEST(Transcoder, SaeLensArchitecturesMatchThePublishedFormula) {
  TempDir tmp;
  for (const std::string arch : {"transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder"}) {
    SCOPED_TRACE(arch);
    const bool skip = arch.find("skip") != std::string::npos;
    const bool jump = arch.rfind("jumprelu", 0) == 0;
    const auto raw = synth::random_raw_transcoder(kDin, kDout, kW, skip, 11);
    synth::write_sae_lens_transcoder(tmp.file(arch), arch, 3, raw);
    const auto tc = sae::load_transcoder(tmp.file(arch), 3);
    EXPECT_EQ(tc.cfg().hook_name, "blocks.3.ln2.hook_normalized");
    EXPECT_EQ(tc.cfg().hook_name_out, "blocks.3.hook_mlp_out");
    EXPECT_EQ(tc.cfg().activation, jump ? sae::Activation::JumpReLU : sae::Activation::ReLU);
    EXPECT_FALSE(tc.cfg().apply_b_dec_to_input);
    EXPECT_FALSE(tc.cfg().center_residual);
    expect_matches(tc, raw, jump, 12);
  }
}

TEST(Transcoder, GemmaScopeNpzIsReadAsTheMlpTranscoderOfItsLayer) {
  TempDir tmp;
  const auto raw = synth::random_raw_transcoder(kDin, kDout, kW, false, 21);
  const auto dir = synth::write_gemma_scope_transcoder(tmp.path(), 5, "16k", 76, raw);
  const auto tc = sae::load_transcoder(dir, 5);
  EXPECT_EQ(tc.cfg().hook_name, "blocks.5.ln2.hook_normalized");
  EXPECT_EQ(tc.cfg().hook_name_out, "blocks.5.hook_mlp_out");
  EXPECT_EQ(tc.cfg().neuronpedia_id, "gemma-2-2b/5-gemmascope-transcoder-16k");
  expect_matches(tc, raw, true, 22);
  // The file is also readable by path (params.npz) and refused for another layer.
  EXPECT_NO_THROW(sae::load_transcoder(dir + "/params.npz", 5));
  EXPECT_THAT([&] { sae::load_transcoder(dir, 4); },
              ThrowsMessage<InputError>(HasSubstr("is a transcoder of layer 5's MLP ('blocks.5.ln2.hook_normalized'), "
                                                  "given for layer 4")));
}

TEST(Transcoder, GemmaScope2WithAndWithoutAffineSkip) {
  TempDir tmp;
  for (const bool affine : {false, true}) {
    for (const bool config : {false, true}) {
      SCOPED_TRACE(std::to_string(affine) + std::to_string(config));
      const auto raw = synth::random_raw_transcoder(kDin, kDout, kW, affine, 31 + affine);
      const std::string root = tmp.file(std::string("r") + (affine ? "a" : "") + (config ? "c" : ""));
      const auto dir = synth::write_gemma_scope2_transcoder(root, {"transcoder", 2, "16k", "small", config}, raw);
      EXPECT_EQ(fs::path(dir).filename().string(), affine ? "layer_2_width_16k_l0_small_affine" : "layer_2_width_16k_l0_small");
      const auto tc = sae::load_transcoder(dir, 2);
      EXPECT_EQ(tc.cfg().hook_name, "blocks.2.hook_mlp_in");
      EXPECT_EQ(tc.cfg().hook_name_out, "blocks.2.hook_mlp_out");
      EXPECT_EQ(tc.cfg().architecture, affine ? "jumprelu_skip_transcoder" : "jumprelu_transcoder");
      expect_matches(tc, raw, true, 32);
    }
  }
}

TEST(Transcoder, SaeOptionStillRefusesTranscoders) {
  TempDir tmp;
  const auto raw = synth::random_raw_transcoder(kDin, kDout, kW, true, 41);
  synth::write_sae_lens_transcoder(tmp.file("tc"), "jumprelu_skip_transcoder", 0, raw);
  EXPECT_THAT([&] { sae::load_sae(tmp.file("tc"), 0, {}); },
              ThrowsMessage<InputError>(AllOf(HasSubstr("is a transcoder"), HasSubstr("blocks.0.hook_mlp_out"))));
  const auto gs2 = synth::write_gemma_scope2_transcoder(tmp.file("g"), {"transcoder", 0, "16k", "small"}, raw);
  EXPECT_THAT([&] { sae::load_sae(gs2, 0, {}); }, ThrowsMessage<InputError>(HasSubstr("is a transcoder")));
}

TEST(Transcoder, SaeOptionRefusesGemmaScopeTranscodersByTheirReleaseFolder) {
  // A Gemma Scope 1 transcoder's params.npz is laid out as a residual SAE's: the release's folder name (as
  // downloaded, or in a Hugging Face cache) tells --sae and encode --sae (load_sae) and the sweep's check
  // (read_sae_config) that it is a transcoder.
  TempDir tmp;
  const auto raw = synth::random_raw_transcoder(kDin, kDin, kW, false, 43);
  for (const std::string release :
       {"gemma-scope-2b-pt-transcoders", "hub/models--google--gemma-scope-2b-pt-transcoders/snapshots/0123abcd"}) {
    SCOPED_TRACE(release);
    const auto dir = synth::write_gemma_scope_transcoder(tmp.file(release), 3, "16k", 54, raw);
    const auto refused = AllOf(HasSubstr(dir), HasSubstr("is a transcoder"),
                               HasSubstr("'blocks.3.ln2.hook_normalized'"), HasSubstr("'blocks.3.hook_mlp_out'"),
                               HasSubstr("give it to sweep --mlp-transcoder or encode --transcoder"));
    EXPECT_THAT([&] { sae::load_sae(dir, 3, {}); }, ThrowsMessage<InputError>(refused));
    EXPECT_THAT([&] { sae::read_sae_config(dir + "/params.npz", -1, {}); }, ThrowsMessage<InputError>(refused));
    // What it is, for `saetraj info`, and still a transcoder for --mlp-transcoder.
    const auto cfg = sae::inspect_sae(dir, 3, {});
    EXPECT_TRUE(cfg.is_transcoder());
    EXPECT_EQ(cfg.architecture, "jumprelu_transcoder");
    EXPECT_EQ(cfg.id, "gemma-2-2b/3-gemmascope-transcoder-16k");
    const auto tc = sae::load_transcoder(dir, 3);
    EXPECT_EQ(tc.cfg().id, "gemma-2-2b/3-gemmascope-transcoder-16k");
    EXPECT_TRUE(torch::equal(tc.w_dec, raw.w_dec));
  }
  // The residual release's folder (and any other) leaves the file a residual SAE.
  const auto res = synth::write_gemma_scope_transcoder(tmp.file("gemma-scope-2b-pt-res"), 3, "16k", 54, raw);
  const auto sae = sae::load_sae(res, 3, {});
  EXPECT_EQ(sae.cfg.hook_name, "blocks.3.hook_resid_post");
  EXPECT_EQ(sae.cfg.id, "gemma-2-2b/3-gemmascope-res-16k");
}

TEST(Transcoder, ResidualSaesAreNotTranscoders) {
  TempDir tmp;
  const auto raw = synth::random_raw_sae(kDin, kW, 51);
  synth::write_sae_lens_sae(tmp.file("res"), {{"architecture", "jumprelu"}}, "blocks.1.hook_resid_post",
                            {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"b_dec", raw.b_dec}, {"threshold", raw.threshold}});
  EXPECT_THAT([&] { sae::load_transcoder(tmp.file("res"), 1); },
              ThrowsMessage<InputError>(AllOf(HasSubstr(tmp.file("res")), HasSubstr("is not a transcoder"),
                                              HasSubstr("blocks.1.hook_resid_post"))));
  const auto gs2 = synth::write_gemma_scope2_sae(tmp.file("g"), {"resid_post", 1, "16k", "small"}, raw);
  EXPECT_THAT([&] { sae::load_transcoder(gs2, 1); }, ThrowsMessage<InputError>(HasSubstr("is not a transcoder")));
}

TEST(Transcoder, WrongHooksAreRefused) {
  TempDir tmp;
  const auto raw = synth::random_raw_transcoder(kDin, kDout, kW, false, 61);
  const auto with_hooks = [&](const std::string& name, const std::string& in, const std::string& out) {
    synth::write_sae_lens_transcoder(tmp.file(name), "jumprelu_transcoder", 2, raw);
    auto cfg = read_json(tmp.file(name) + "/cfg.json");
    cfg["metadata"]["hook_name"] = in;
    cfg["metadata"]["hook_name_out"] = out;
    write_json(tmp.file(name) + "/cfg.json", cfg);
    return tmp.file(name);
  };
  // Reads the residual stream instead of the MLP input.
  EXPECT_THAT([&] { sae::load_transcoder(with_hooks("a", "blocks.2.hook_resid_mid", "blocks.2.hook_mlp_out"), 2); },
              ThrowsMessage<InputError>(AllOf(HasSubstr("maps 'blocks.2.hook_resid_mid' to 'blocks.2.hook_mlp_out'"),
                                              HasSubstr("blocks.2.ln2.hook_normalized"))));
  // Predicts something other than the MLP output.
  EXPECT_THAT([&] { sae::load_transcoder(with_hooks("b", "blocks.2.ln2.hook_normalized", "blocks.2.hook_resid_post"), 2); },
              ThrowsMessage<InputError>(HasSubstr("needs a transcoder of the MLP")));
  // Cross-layer.
  EXPECT_THAT([&] { sae::load_transcoder(with_hooks("c", "blocks.2.ln2.hook_normalized", "blocks.3.hook_mlp_out"), 2); },
              ThrowsMessage<InputError>(HasSubstr("reads layer 2 but predicts layer 3")));
  // Another layer's transcoder.
  EXPECT_THAT([&] { sae::load_transcoder(with_hooks("d", "blocks.2.mlp.hook_in", "blocks.2.hook_mlp_out"), 1); },
              ThrowsMessage<InputError>(HasSubstr("given for layer 1")));
  EXPECT_NO_THROW(sae::load_transcoder(tmp.file("d"), 2));
}

TEST(Transcoder, BadSaeLensFilesGetOneLineErrors) {
  TempDir tmp;
  const auto raw = synth::random_raw_transcoder(kDin, kDout, kW, true, 71);
  const auto fresh = [&](const std::string& name) {
    synth::write_sae_lens_transcoder(tmp.file(name), "jumprelu_skip_transcoder", 0, raw);
    return tmp.file(name);
  };
  const auto drop = [](const char* which) {
    return [which](std::vector<std::pair<std::string, torch::Tensor>>& t) {
      std::erase_if(t, [&](const auto& p) { return p.first == which; });
    };
  };
  for (const char* name : {"W_dec", "b_dec", "W_enc"}) {
    const auto f = fresh(std::string("missing_") + name);
    rewrite_weights(f, drop(name));
    EXPECT_THAT([&] { sae::load_transcoder(f, 0); },
                ThrowsMessage<FormatError>(AllOf(HasSubstr(f + "/sae_weights.safetensors"),
                                                 HasSubstr(std::string("missing tensor '") + name + "'"))));
  }
  auto f = fresh("no_skip");
  rewrite_weights(f, drop("W_skip"));
  EXPECT_THAT([&] { sae::load_transcoder(f, 0); }, ThrowsMessage<FormatError>(HasSubstr("needs a 'W_skip' tensor")));
  f = fresh("no_threshold");
  rewrite_weights(f, drop("threshold"));
  EXPECT_THAT([&] { sae::load_transcoder(f, 0); }, ThrowsMessage<FormatError>(HasSubstr("needs a 'threshold' tensor")));
  f = fresh("wide_dec");
  rewrite_weights(f, [](auto& t) {
    for (auto& [n, v] : t) if (n == "W_dec") v = torch::zeros({kW, kDout + 1});
  });
  EXPECT_THAT([&] { sae::load_transcoder(f, 0); },
              ThrowsMessage<FormatError>(AllOf(HasSubstr("tensor 'W_dec'"), HasSubstr("wrong shape"),
                                               HasSubstr("[80, 12]"), HasSubstr("[80, 13]"))));
  f = fresh("skip_orientation");
  rewrite_weights(f, [](auto& t) {
    for (auto& [n, v] : t) if (n == "W_skip") v = v.t().contiguous();
  });
  EXPECT_THAT([&] { sae::load_transcoder(f, 0); },
              ThrowsMessage<FormatError>(AllOf(HasSubstr("tensor 'W_skip'"), HasSubstr("[12, 16]"))));
  f = fresh("nan");
  rewrite_weights(f, [](auto& t) {
    for (auto& [n, v] : t) if (n == "W_dec") v[0][0] = std::nan("");
  });
  EXPECT_THAT([&] { sae::load_transcoder(f, 0); }, ThrowsMessage<FormatError>(HasSubstr("NaN or Inf")));

  const auto edit_cfg = [&](const std::string& name, auto change) {
    const auto g = fresh(name);
    auto cfg = read_json(g + "/cfg.json");
    change(cfg);
    write_json(g + "/cfg.json", cfg);
    return g;
  };
  f = edit_cfg("no_d_out", [](auto& c) { c.erase("d_out"); });
  EXPECT_THAT([&] { sae::load_transcoder(f, 0); },
              ThrowsMessage<FormatError>(AllOf(HasSubstr(f + "/cfg.json"), HasSubstr("missing field \"d_out\""))));
  f = edit_cfg("no_out_hook", [](auto& c) { c["metadata"].erase("hook_name_out"); });
  EXPECT_THAT([&] { sae::load_transcoder(f, 0); }, ThrowsMessage<FormatError>(HasSubstr("needs \"hook_name_out\"")));
  f = edit_cfg("b_dec_in", [](auto& c) { c["apply_b_dec_to_input"] = true; });
  EXPECT_THAT([&] { sae::load_transcoder(f, 0); },
              ThrowsMessage<InputError>(HasSubstr("apply_b_dec_to_input must be false for a transcoder")));
  f = edit_cfg("norm", [](auto& c) { c["normalize_activations"] = "layer_norm"; });
  EXPECT_THAT([&] { sae::load_transcoder(f, 0); },
              ThrowsMessage<InputError>(HasSubstr("normalize_activations \"layer_norm\" is not supported for transcoders")));
}

TEST(Transcoder, BadGemmaScopeFilesGetOneLineErrors) {
  TempDir tmp;
  const auto raw = synth::random_raw_transcoder(kDin, kDout, kW, true, 81);
  // Gemma Scope 1 without W_dec.
  const fs::path npz_dir = fs::path(tmp.path()) / "layer_1" / "width_16k" / "average_l0_9";
  fs::create_directories(npz_dir);
  io::write_npz((npz_dir / "params.npz").string(),
                {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"b_dec", raw.b_dec}, {"threshold", raw.threshold}});
  EXPECT_THAT([&] { sae::load_transcoder(npz_dir.string(), 1); },
              ThrowsMessage<FormatError>(HasSubstr("missing array 'W_dec'")));
  // Gemma Scope 1 with b_dec of d_in instead of d_out.
  io::write_npz((npz_dir / "params.npz").string(), {{"W_enc", raw.w_enc},
                                                   {"W_dec", raw.w_dec},
                                                   {"b_enc", raw.b_enc},
                                                   {"b_dec", torch::zeros({kDin})},
                                                   {"threshold", raw.threshold}});
  EXPECT_THAT([&] { sae::load_transcoder(npz_dir.string(), 1); },
              ThrowsMessage<FormatError>(AllOf(HasSubstr("'b_dec'"), HasSubstr("wrong shape"))));
  // Gemma Scope 2: affine_skip_connection of the wrong shape, missing w_dec.
  const auto dir = synth::write_gemma_scope2_transcoder(tmp.file("g"), {"transcoder", 0, "16k", "small"}, raw);
  io::write_safetensors(dir + "/params.safetensors", {{"w_enc", raw.w_enc},
                                                     {"w_dec", raw.w_dec},
                                                     {"b_enc", raw.b_enc},
                                                     {"b_dec", raw.b_dec},
                                                     {"threshold", raw.threshold},
                                                     {"affine_skip_connection", raw.w_skip}});
  EXPECT_THAT([&] { sae::load_transcoder(dir, 0); },
              ThrowsMessage<FormatError>(AllOf(HasSubstr("'affine_skip_connection'"), HasSubstr("[16, 12]"))));
  io::write_safetensors(dir + "/params.safetensors", {{"w_enc", raw.w_enc},
                                                     {"b_enc", raw.b_enc},
                                                     {"b_dec", raw.b_dec},
                                                     {"threshold", raw.threshold}});
  EXPECT_THAT([&] { sae::load_transcoder(dir, 0); }, ThrowsMessage<FormatError>(HasSubstr("missing tensor 'w_dec'")));
}
