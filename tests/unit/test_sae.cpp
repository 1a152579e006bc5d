// SAE-Lens folders: both cfg generations, every activation and preprocessing mode on hand-computed
// inputs, and the errors for inconsistent folders.
#include <gtest/gtest.h>

#include <cmath>

#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/sae/sae_lens.h"
#include "test_support.h"

using namespace saetraj;

namespace {

void write_sae(const saetraj::testing::TempDir& dir, const std::string& cfg, int64_t d_in, int64_t d_sae, bool threshold,
               bool drop_b_enc = false) {
  saetraj::testing::write_file(dir.file("cfg.json"), cfg);
  std::vector<std::pair<std::string, torch::Tensor>> t;
  t.emplace_back("W_enc", torch::arange(d_in * d_sae, torch::kFloat32).reshape({d_in, d_sae}) / 10.0);
  t.emplace_back("W_dec", torch::zeros({d_sae, d_in}));
  if (!drop_b_enc) t.emplace_back("b_enc", torch::full({d_sae}, -0.5f));
  t.emplace_back("b_dec", torch::full({d_in}, 0.25f));
  if (threshold) t.emplace_back("threshold", torch::full({d_sae}, 1.0f));
  io::write_safetensors(dir.file("sae_weights.safetensors"), t);
}

const char* kSaeLens6 = R"({
  "architecture": "jumprelu", "d_in": 2, "d_sae": 3, "dtype": "float32", "apply_b_dec_to_input": false,
  "normalize_activations": "none",
  "metadata": {"model_name": "gemma-2-2b", "hook_name": "blocks.12.hook_resid_post", "prepend_bos": true,
               "neuronpedia_id": "gemma-2-2b/12-gemmascope-res-16k", "model_from_pretrained_kwargs": {}}
})";

const char* kFlat = R"({
  "model_name": "gpt2-small", "hook_point": "blocks.8.hook_resid_pre", "hook_point_layer": 8, "d_in": 2,
  "d_sae": 3, "activation_fn_str": "relu", "normalize_activations": false, "prepend_bos": true,
  "neuronpedia_id": "gpt2-small/8-res-jb"
})";

}  // namespace

TEST(SaeLens, Version6CfgUnderMetadata) {
  saetraj::testing::TempDir dir;
  write_sae(dir, kSaeLens6, 2, 3, true);
  const auto sae = sae::load_sae_lens(dir.path());
  EXPECT_EQ(sae.cfg.hook_name, "blocks.12.hook_resid_post");
  EXPECT_EQ(sae.cfg.hook_layer, 12);
  EXPECT_EQ(sae.cfg.hook_kind, sae::HookKind::ResidPost);
  EXPECT_EQ(sae.cfg.activation, sae::Activation::JumpReLU);
  EXPECT_FALSE(sae.cfg.apply_b_dec_to_input);
  EXPECT_FALSE(sae.cfg.center_residual);
  EXPECT_EQ(sae.cfg.id, "gemma-2-2b/12-gemmascope-res-16k");
  EXPECT_TRUE(sae.cfg.prepend_bos.value());
  EXPECT_TRUE(sae.threshold.defined());
}

TEST(SaeLens, FlatCfgOfGpt2IsCentredByDefault) {
  saetraj::testing::TempDir dir;
  write_sae(dir, kFlat, 2, 3, false);
  const auto sae = sae::load_sae_lens(dir.path());
  EXPECT_EQ(sae.cfg.hook_layer, 8);
  EXPECT_EQ(sae.cfg.hook_kind, sae::HookKind::ResidPre);
  EXPECT_EQ(sae.cfg.activation, sae::Activation::ReLU);
  EXPECT_TRUE(sae.cfg.apply_b_dec_to_input);
  EXPECT_TRUE(sae.cfg.center_residual);  // gpt2 family, TransformerLens default
  sae::SaeLoadOptions off;
  off.center_residual = false;
  EXPECT_FALSE(sae::load_sae_lens(dir.path(), off).cfg.center_residual);
}

// W_enc = [[0, .1, .2], [.3, .4, .5]], b_enc = -.5, b_dec = .25
TEST(SaeLens, ReluEncodingByHand) {
  saetraj::testing::TempDir dir;
  write_sae(dir, kFlat, 2, 3, false);
  sae::SaeLoadOptions off;
  off.center_residual = false;
  const auto sae = sae::load_sae_lens(dir.path(), off);
  // x = (2.25, 1.25) -> x - b_dec = (2, 1) -> pre = (0.3, 0.6, 0.9) - 0.5 = (-0.2, 0.1, 0.4)
  const auto acts = sae.encode(torch::tensor({{2.25f, 1.25f}}));
  EXPECT_NEAR(acts[0][0].item<float>(), 0.0f, 1e-6);
  EXPECT_NEAR(acts[0][1].item<float>(), 0.1f, 1e-6);
  EXPECT_NEAR(acts[0][2].item<float>(), 0.4f, 1e-6);
}

TEST(SaeLens, CentringSubtractsTheVectorMean) {
  saetraj::testing::TempDir dir;
  write_sae(dir, kFlat, 2, 3, false);
  const auto sae = sae::load_sae_lens(dir.path());  // centred
  // x = (3, 1) -> centred (1, -1) -> minus b_dec (.75, -1.25) -> pre = (-.375, -.425, -.475) - .5
  const auto pre = sae.pre_activations(sae.preprocess(torch::tensor({{3.0f, 1.0f}})));
  EXPECT_NEAR(pre[0][0].item<float>(), -0.875f, 1e-6);
  EXPECT_NEAR(pre[0][2].item<float>(), -0.975f, 1e-6);
}

TEST(SaeLens, JumpReluIsStrictAboveThreshold) {
  saetraj::testing::TempDir dir;
  write_sae(dir, kSaeLens6, 2, 3, true);
  const auto sae = sae::load_sae_lens(dir.path());  // no b_dec subtraction, threshold 1
  // x = (0, 3): pre = 3 * (.3, .4, .5) - .5 = (.4, .7, 1.0): feature 2 sits exactly at the threshold
  // x = (0, 4): pre = (.7, 1.1, 1.5)
  const auto acts = sae.encode(torch::tensor({{0.0f, 3.0f}, {0.0f, 4.0f}}));
  EXPECT_EQ(acts[0].abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(acts[1][0].item<float>(), 0.0f);
  EXPECT_NEAR(acts[1][1].item<float>(), 1.1f, 1e-5);
  EXPECT_NEAR(acts[1][2].item<float>(), 1.5f, 1e-6);
}

TEST(SaeLens, TopKKeepsKLargestFromKwargs) {
  saetraj::testing::TempDir dir;
  write_sae(dir, R"({"d_in": 2, "d_sae": 3, "hook_point": "blocks.0.hook_resid_mid", "activation_fn_str": "topk",
                    "activation_fn_kwargs": {"k": 2}, "apply_b_dec_to_input": false,
                    "normalize_activations": "none", "model_name": "x"})",
            2, 3, false);
  const auto sae = sae::load_sae_lens(dir.path());
  EXPECT_EQ(sae.cfg.topk_k, 2);
  const auto acts = sae.encode(torch::tensor({{1.0f, 5.0f}}));  // pre (1.0, 1.6, 2.2)
  EXPECT_EQ(acts[0][0].item<float>(), 0.0f);
  EXPECT_GT(acts[0][1].item<float>(), 0.0f);
}

TEST(SaeLens, NormalisationModes) {
  sae::Sae s;
  s.cfg.d_in = 4;
  s.cfg.apply_b_dec_to_input = false;
  s.b_dec = torch::zeros({4});
  const auto x = torch::tensor({{1.0f, 2.0f, 3.0f, 6.0f}});
  s.cfg.normalization = sae::Normalization::LayerNorm;
  // mean 3, centred (-2, -1, 0, 3), unbiased std sqrt(14/3)
  const double sd = std::sqrt(14.0 / 3.0);
  EXPECT_NEAR(s.preprocess(x)[0][3].item<float>(), 3.0 / (sd + 1e-5), 1e-5);
  s.cfg.normalization = sae::Normalization::ConstantNormRescale;
  // |x| = sqrt(50); scaled to norm sqrt(4) = 2
  EXPECT_NEAR(s.preprocess(x).norm().item<float>(), 2.0f, 1e-5);
  EXPECT_NEAR(s.preprocess(x)[0][0].item<float>(), 2.0 / std::sqrt(50.0), 1e-6);
}

TEST(SaeLens, BrokenFoldersGiveClearErrors) {
  saetraj::testing::TempDir dir;
  EXPECT_THROW(sae::load_sae_lens(dir.path()), IoError);  // no cfg.json
  saetraj::testing::write_file(dir.file("cfg.json"), "{");
  EXPECT_THROW(sae::read_sae_lens_config(dir.path()), FormatError);
  saetraj::testing::write_file(dir.file("cfg.json"), R"({"d_in": 2, "d_sae": 3})");
  try {
    sae::read_sae_lens_config(dir.path());
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("hook_name"), std::string::npos) << e.what();
  }
  saetraj::testing::write_file(dir.file("cfg.json"), R"({"d_in": 2, "d_sae": 3, "hook_name": "blocks.1.hook_resid_post",
                                                "architecture": "abstopk"})");
  EXPECT_THROW(sae::read_sae_lens_config(dir.path()), InputError);  // gated and others: test_sae_formats
  // cfg says d_sae 4, weights hold 3 features.
  write_sae(dir, R"({"d_in": 2, "d_sae": 4, "hook_name": "blocks.1.hook_resid_post"})", 2, 3, false);
  try {
    sae::load_sae_lens(dir.path());
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("expected [2, 4], got [2, 3]"), std::string::npos) << e.what();
  }
  write_sae(dir, kSaeLens6, 2, 3, false);  // jumprelu without threshold
  EXPECT_THROW(sae::load_sae_lens(dir.path()), FormatError);
  write_sae(dir, kFlat, 2, 3, false, /*drop_b_enc=*/true);
  try {
    sae::load_sae_lens(dir.path());
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("b_enc"), std::string::npos) << e.what();
  }
}
