// Gemma Scope SAEs: params.npz loading (JumpReLU, no b_dec subtraction, resid_post hook, the SAE id),
// the choice of one SAE per layer from a release tree (canonical L0, closest L0 for other widths), the
// sweep's SAE sources, and a clear error for every bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "saetraj/core/error.h"
#include "saetraj/io/npz.h"
#include "saetraj/pipeline/sae_sources.h"
#include "saetraj/sae/gemma_scope.h"
#include "saetraj/sae/gemma_scope_release.h"
#include "saetraj/sae/sae_source.h"
#include "test_support.h"

using namespace saetraj;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kD = 6, kW = 10;

// A small params.npz with known values: W_enc[i][f] = (i - f) / 10, b_enc[f] = f / 100, b_dec[i] = 1,
// threshold[f] = 0.2.
std::vector<std::pair<std::string, torch::Tensor>> params() {
  const auto i = torch::arange(kD, torch::kFloat32).unsqueeze(1), f = torch::arange(kW, torch::kFloat32);
  return {{"W_enc", (i - f) / 10},
          {"W_dec", torch::ones({kW, kD})},
          {"b_enc", f / 100},
          {"b_dec", torch::ones({kD})},
          {"threshold", torch::full({kW}, 0.2f)}};
}

std::string write_params(const std::string& dir,
                         std::vector<std::pair<std::string, torch::Tensor>> arrays = params()) {
  fs::create_directories(dir);
  io::write_npz(dir + "/params.npz", arrays);
  return dir;
}

}  // namespace

TEST(GemmaScope, LoadsJumpReluWithoutBdecSubtraction) {
  saetraj::testing::TempDir tmp;
  const auto dir = write_params(tmp.path() + "/layer_7/width_16k/average_l0_50");
  ASSERT_TRUE(sae::is_gemma_scope(dir));
  ASSERT_TRUE(sae::is_gemma_scope(dir + "/params.npz"));
  EXPECT_FALSE(sae::is_gemma_scope(tmp.path()));
  const auto s = sae::load_gemma_scope(dir);
  EXPECT_EQ(s.cfg.d_in, kD);
  EXPECT_EQ(s.cfg.d_sae, kW);
  EXPECT_EQ(s.cfg.activation, sae::Activation::JumpReLU);
  EXPECT_FALSE(s.cfg.apply_b_dec_to_input);
  EXPECT_EQ(s.cfg.normalization, sae::Normalization::None);
  EXPECT_FALSE(s.cfg.center_residual);
  EXPECT_EQ(s.cfg.hook_name, "blocks.7.hook_resid_post");
  EXPECT_EQ(s.cfg.hook_layer, 7);
  EXPECT_EQ(s.cfg.hook_kind, sae::HookKind::ResidPost);
  EXPECT_EQ(s.cfg.id, "gemma-2-2b/7-gemmascope-res-16k");
  EXPECT_EQ(s.cfg.neuronpedia_id, s.cfg.id);
  EXPECT_EQ(s.bytes(), (kD * kW + kW + kD + kW) * 4);  // W_dec is not held
  // x = 1 everywhere: pre[f] = sum_i (i - f)/10 + f/100 = (15 - 6f)/10 + f/100; b_dec is not subtracted.
  const auto acts = s.encode(torch::ones({1, kD}));
  for (int64_t f = 0; f < kW; ++f) {
    const double pre = (15.0 - 6.0 * f) / 10.0 + f / 100.0;
    EXPECT_NEAR(acts[0][f].item<float>(), pre > 0.2 ? pre : 0.0, 1e-6) << f;
  }
}

TEST(GemmaScope, WidthLabelsAndIdsFollowTheRelease) {
  EXPECT_EQ(sae::gemma_scope_width_label(16384), "16k");
  EXPECT_EQ(sae::gemma_scope_width_label(65536), "65k");
  EXPECT_EQ(sae::gemma_scope_width_label(131072), "131k");
  EXPECT_EQ(sae::gemma_scope_width_label(1048576), "1m");
  EXPECT_EQ(sae::gemma_scope_width_label(512), "512");
  saetraj::testing::TempDir tmp;
  // No layer_/width_ in the path: layer from the options, width label from d_sae.
  const auto dir = write_params(tmp.path() + "/plain");
  sae::GemmaScopeOptions o;
  o.model_id = "gemma-2-9b";
  o.layer = 3;
  EXPECT_EQ(sae::read_gemma_scope_config(dir, o).id, "gemma-2-9b/3-gemmascope-res-10");
  EXPECT_THAT([&] { sae::read_gemma_scope_config(dir); },
              ThrowsMessage<InputError>(HasSubstr("cannot tell the layer")));
  EXPECT_EQ(sae::gemma_scope_model_id(2304, "/x/y"), "gemma-2-2b");
  EXPECT_EQ(sae::gemma_scope_model_id(3584, "/x/y"), "gemma-2-9b");
  EXPECT_EQ(sae::gemma_scope_model_id(64, "/x/my-model/"), "my-model");
}

TEST(GemmaScope, CanonicalL0IsTheSpecList) {
  EXPECT_EQ(sae::gemma_scope_canonical_l0(0), 73);
  EXPECT_EQ(sae::gemma_scope_canonical_l0(3), 89);
  EXPECT_EQ(sae::gemma_scope_canonical_l0(12), 72);
  EXPECT_EQ(sae::gemma_scope_canonical_l0(25), 93);
  EXPECT_FALSE(sae::gemma_scope_canonical_l0(26).has_value());
  EXPECT_FALSE(sae::gemma_scope_canonical_l0(-1).has_value());
}

TEST(GemmaScope, ReleaseTreeResolution) {
  saetraj::testing::TempDir tmp;
  const std::string root = tmp.path();
  for (int l0 : {50, 89, 120}) write_params(root + "/layer_3/width_65k/average_l0_" + std::to_string(l0));
  for (int l0 : {40, 80, 150}) write_params(root + "/layer_3/width_16k/average_l0_" + std::to_string(l0));
  for (int l0 : {63, 83}) write_params(root + "/layer_0/width_16k/average_l0_" + std::to_string(l0));
  write_params(root + "/layer_30/width_16k/average_l0_10");
  fs::create_directories(root + "/layer_3/width_1m/empty");
  // 65k: the canonical L0 itself (layer 3: 89).
  EXPECT_EQ(sae::resolve_gemma_scope(root, 3, "65k"), root + "/layer_3/width_65k/average_l0_89");
  // 16k: the closest to 89.
  EXPECT_EQ(sae::resolve_gemma_scope(root, 3, "16k"), root + "/layer_3/width_16k/average_l0_80");
  // A tie (73 between 63 and 83) goes to the smaller L0.
  EXPECT_EQ(sae::resolve_gemma_scope(root, 0, "16k"), root + "/layer_0/width_16k/average_l0_63");
  // An explicit target.
  EXPECT_EQ(sae::resolve_gemma_scope(root, 3, "16k", 140.0), root + "/layer_3/width_16k/average_l0_150");
  EXPECT_EQ(sae::resolve_gemma_scope(root, 30, "16k", 5.0), root + "/layer_30/width_16k/average_l0_10");
  // The chosen SAE loads with the layer taken from the path.
  EXPECT_EQ(sae::read_gemma_scope_config(sae::resolve_gemma_scope(root, 3, "65k")).hook_layer, 3);

  EXPECT_THAT([&] { sae::resolve_gemma_scope(root, 4, "65k"); },
              ThrowsMessage<InputError>(HasSubstr("no layer_4 folder; it has: layer_0, layer_3, layer_30")));
  EXPECT_THAT([&] { sae::resolve_gemma_scope(root, 3, "131k"); },
              ThrowsMessage<InputError>(
                  HasSubstr("no width_131k folder; widths there: width_16k, width_1m, width_65k")));
  EXPECT_THAT([&] { sae::resolve_gemma_scope(root, 3, "1m"); },
              ThrowsMessage<InputError>(HasSubstr("holds no average_l0_<N> folder; it has: empty")));
  EXPECT_THAT([&] { sae::resolve_gemma_scope(root, 30, "16k"); },
              ThrowsMessage<InputError>(HasSubstr("no canonical L0 is known for layer 30")));
  EXPECT_THAT([&] { sae::resolve_gemma_scope(root + "/nope", 3, "65k"); },
              ThrowsMessage<IoError>(HasSubstr("is not a folder")));
}

// The original study's setting: canonical L0 everywhere except layer 3, which took average_l0_193
// (jobs/gemma-2-2b-gemmascope-65k.cfg).
TEST(GemmaScope, PerLayerL0OverridesTheCanonicalOne) {
  saetraj::testing::TempDir tmp;
  const std::string root = tmp.path();
  for (int l0 : {89, 193}) write_params(root + "/layer_3/width_65k/average_l0_" + std::to_string(l0));
  for (int l0 : {73, 150}) write_params(root + "/layer_0/width_65k/average_l0_" + std::to_string(l0));
  pipeline::SweepOptions o;
  o.gemmascope_root = root;
  o.gemmascope_width = "65k";
  o.gemmascope_l0_layers = {"3=193"};
  EXPECT_EQ(pipeline::sweep_sae_paths(o, {0, 3}), (std::vector<std::string>{
                                                       root + "/layer_0/width_65k/average_l0_73",
                                                       root + "/layer_3/width_65k/average_l0_193"}));
  o.gemmascope_l0_layers = {"3=lots"};
  EXPECT_THAT([&] { pipeline::sweep_sae_paths(o, {0, 3}); },
              ThrowsMessage<InputError>(HasSubstr("--gemmascope-l0-layer \"3=lots\": expected LAYER=L0")));
  o.gemmascope_l0_layers = {"5=193"};
  EXPECT_THAT([&] { pipeline::sweep_sae_paths(o, {0, 3}); },
              ThrowsMessage<InputError>(HasSubstr("layer 5 is not among the analysed layers")));
  o.gemmascope_l0_layers = {"3=193", "3=89"};
  EXPECT_THAT([&] { pipeline::sweep_sae_paths(o, {0, 3}); },
              ThrowsMessage<InputError>(HasSubstr("layer 3 is given more than once")));
}

TEST(GemmaScope, BadFilesAreClearErrors) {
  saetraj::testing::TempDir tmp;
  // Not a zip at all.
  fs::create_directories(tmp.path() + "/layer_1/corrupt");
  saetraj::testing::write_file(tmp.path() + "/layer_1/corrupt/params.npz", "this is not a zip archive");
  EXPECT_THROW(sae::read_gemma_scope_config(tmp.path() + "/layer_1/corrupt"), Error);
  try {
    sae::read_gemma_scope_config(tmp.path() + "/layer_1/corrupt");
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("layer_1/corrupt/params.npz"));
  }
  // A missing array.
  auto arrays = params();
  arrays.pop_back();
  const auto no_threshold = write_params(tmp.path() + "/layer_1/no_threshold", arrays);
  EXPECT_THAT([&] { sae::read_gemma_scope_config(no_threshold); },
              ThrowsMessage<FormatError>(HasSubstr("missing array 'threshold'")));
  // A wrong shape.
  arrays = params();
  arrays[2].second = torch::zeros({kW + 1});
  const auto bad_b_enc = write_params(tmp.path() + "/layer_1/bad_b_enc", arrays);
  EXPECT_THAT([&] { sae::load_gemma_scope(bad_b_enc); },
              ThrowsMessage<FormatError>(HasSubstr("tensor 'b_enc' in " + bad_b_enc +
                                                   "/params.npz has wrong shape; "
                                                   "expected [10], got [11]")));
  // W_enc that is not a matrix.
  arrays = params();
  arrays[0].second = torch::zeros({kD * kW});
  const auto flat = write_params(tmp.path() + "/layer_1/flat", arrays);
  EXPECT_THAT([&] { sae::read_gemma_scope_config(flat); },
              ThrowsMessage<FormatError>(HasSubstr("'W_enc' must be [d_model, width]")));
  EXPECT_THAT([&] { sae::read_gemma_scope_config(tmp.path() + "/layer_1/none"); },
              ThrowsMessage<IoError>(HasSubstr("no Gemma Scope params.npz")));
}

TEST(GemmaScope, SweepSourcesRouteByLayout) {
  saetraj::testing::TempDir tmp;
  const std::string root = tmp.path() + "/release";
  write_params(root + "/layer_0/width_16k/average_l0_70");
  write_params(root + "/layer_1/width_16k/average_l0_118");
  write_params(root + "/layer_1/width_16k/average_l0_130");
  pipeline::SweepOptions o;
  o.model = tmp.path() + "/saetraj-demo-gemma2";
  o.gemmascope_root = root;
  o.gemmascope_width = "16k";
  const auto paths = pipeline::sweep_sae_paths(o, {0, 1});
  EXPECT_EQ(paths, (std::vector<std::string>{root + "/layer_0/width_16k/average_l0_70",
                                             root + "/layer_1/width_16k/average_l0_118"}));
  o.gemmascope_l0 = 128;
  EXPECT_EQ(pipeline::sweep_sae_paths(o, {1})[0], root + "/layer_1/width_16k/average_l0_130");
  model::ModelConfig config;
  config.d_model = kD;
  const auto options = pipeline::sweep_sae_options(o, config);
  const auto cfg = sae::read_sae_config(paths[1], 1, options);
  EXPECT_EQ(cfg.id, "saetraj-demo-gemma2/1-gemmascope-res-16k");
  EXPECT_EQ(sae::load_sae(paths[1], 1, options).cfg.activation, sae::Activation::JumpReLU);
  // A params.npz folder given through --sae, with no layer in its path, takes the assigned layer.
  const auto plain = write_params(tmp.path() + "/plain");
  EXPECT_EQ(sae::read_sae_config(plain, 5, options).hook_layer, 5);
  // Anything else is read as SAE-Lens.
  EXPECT_THAT([&] { sae::read_sae_config(tmp.path(), 0, options); },
              ThrowsMessage<IoError>(HasSubstr("cfg.json")));
  o.saes = {"x/{layer}"};
  EXPECT_THAT([&] { pipeline::sweep_sae_paths(o, {0}); },
              ThrowsMessage<InputError>(HasSubstr("do not also give --sae")));
}
