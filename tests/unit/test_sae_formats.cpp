// The SAE releases beyond SAE-Lens's standard/jumprelu/topk and Gemma Scope 1: Gemma Scope 2, Llama Scope,
// sparsify, and SAE-Lens's gated, batchtopk/matryoshka_batchtopk, topk with rescale_acts_by_decoder_norm and
// constant_scalar_rescale. Each is written in its published layout (synth/sae_formats.h), loaded through the
// sweep's entry point (load_sae), and its activations are held to the published encode formula computed
// here in double precision from the raw tensors (not from the folded ones the loader makes). Also: the hook
// point check, and a one-line error for every bad file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "saetraj/core/error.h"
#include "saetraj/io/safetensors.h"
#include "saetraj/pipeline/sae_sources.h"
#include "saetraj/sae/sae_source.h"
#include "saetraj/synth/sae_formats.h"
#include "test_support.h"

using namespace saetraj;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
namespace fs = std::filesystem;
using synth::RawSae;

namespace {

constexpr int64_t kD = 16, kW = 96;

torch::Tensor inputs(uint64_t seed, double scale = 1.0) {
  auto gen = at::detail::createCPUGenerator(seed);
  return (torch::randn({40, kD}, gen) * scale + 0.3).contiguous();
}

torch::Tensor f64(const torch::Tensor& t) { return t.to(torch::kFloat64); }

// JumpReLU as published: pre where pre > threshold, else 0.
torch::Tensor jumprelu(const torch::Tensor& pre, const torch::Tensor& threshold) {
  return pre * pre.gt(threshold).to(torch::kFloat64);
}

// TopK as SAE-Lens and sparsify apply it: the k largest pre-activations, ReLU'd, the rest 0.
torch::Tensor top_k_of(const torch::Tensor& pre, int64_t k) {
  const auto top = pre.topk(k, -1);
  return torch::zeros_like(pre).scatter_(-1, std::get<1>(top), std::get<0>(top).relu());
}

// Activations equal up to float32 rounding; features within rounding of a threshold may differ in firing.
void expect_same_activations(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const auto g = f64(got), w = f64(want);
  const double tol = 1e-5 * std::max(1.0, w.abs().max().item<double>());
  const auto bad = ((g - w).abs() > tol).sum().item<int64_t>();
  EXPECT_EQ(bad, 0) << what << ": max difference " << (g - w).abs().max().item<double>();
  const auto active = w.gt(0).sum().item<int64_t>();
  EXPECT_GT(active, want.numel() / 50) << what << ": too few active features for a meaningful comparison";
  EXPECT_LT(active, want.numel()) << what << ": every feature active; the activation is not exercised";
}

sae::Sae load(const std::string& path, int layer = 0) { return sae::load_sae(path, layer, {}); }

void rewrite_json(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  std::ifstream in(path);
  auto j = nlohmann::json::parse(in);
  edit(j);
  std::ofstream(path) << j.dump();
}

}  // namespace

// ---- Gemma Scope 2 --------------------------------------------------------------------------------------

TEST(GemmaScope2, ReleaseFolderIsJumpReluOnResidPostWithoutBDec) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 1);
  const auto dir = synth::write_gemma_scope2_sae(tmp.path(), {"resid_post", 3, "16k", "medium"}, raw);
  sae::SaeSourceOptions options;
  options.gemma_scope2.model_id = "gemma-3-1b";
  const auto s = sae::load_sae(dir, 3, options);
  EXPECT_EQ(s.cfg.format, "gemma-scope-2");
  EXPECT_EQ(s.cfg.hook_name, "blocks.3.hook_resid_post");
  EXPECT_EQ(s.cfg.hook_kind, sae::HookKind::ResidPost);
  EXPECT_EQ(s.cfg.neuronpedia_id, "gemma-3-1b/3-gemmascope-2-res-16k");
  EXPECT_FALSE(s.cfg.apply_b_dec_to_input);
  EXPECT_EQ(s.cfg.prepend_bos, true);
  const auto x = inputs(2);
  const auto want = jumprelu(f64(x).matmul(f64(raw.w_enc)) + f64(raw.b_enc), f64(raw.threshold));
  expect_same_activations(s.encode(x), want, "gemma scope 2");
  // b_dec is not subtracted: the same SAE with b_dec subtracted gives other activations.
  const auto shifted = jumprelu((f64(x) - f64(raw.b_dec)).matmul(f64(raw.w_enc)) + f64(raw.b_enc), f64(raw.threshold));
  EXPECT_GT((shifted - want).abs().max().item<double>(), 1e-3);
}

TEST(GemmaScope2, ConfigJsonNamesTheHookAndTheFileIsReadAsAFileToo) {
  saetraj::testing::TempDir tmp;
  synth::GemmaScope2Spec spec{"resid_post_all", 5, "262k", "big", true};
  const auto dir = synth::write_gemma_scope2_sae(tmp.path(), spec, synth::random_raw_sae(kD, kW, 3));
  const auto c = sae::read_sae_config(dir + "/params.safetensors", 5, {});
  EXPECT_EQ(c.hook_name, "blocks.5.hook_resid_post");
  EXPECT_EQ(c.model_name, "gemma-v3-1b-pt");
  // Without the site folder, config.json alone tells the hook.
  fs::create_directories(tmp.file("loose"));
  fs::copy(dir, tmp.file("loose/layer_5_width_262k_l0_big"));
  EXPECT_EQ(sae::read_sae_config(tmp.file("loose/layer_5_width_262k_l0_big"), 5, {}).hook_kind,
            sae::HookKind::ResidPost);
}

TEST(GemmaScope2, NonResidualSitesAreRefusedWithWhatTheyAre) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 4);
  const auto attn = synth::write_gemma_scope2_sae(tmp.path(), {"attn_out", 2, "16k", "small"}, raw);
  const auto mlp = synth::write_gemma_scope2_sae(tmp.path(), {"mlp_out", 2, "16k", "small"}, raw);
  const auto tc = synth::write_gemma_scope2_sae(tmp.path(), {"transcoder", 2, "16k", "small", true}, raw);
  EXPECT_THAT([&] { load(attn, 2); }, ThrowsMessage<InputError>(AllOf(HasSubstr("hook_z"), HasSubstr(attn))));
  EXPECT_THAT([&] { load(mlp, 2); }, ThrowsMessage<InputError>(HasSubstr("MLP-output SAE")));
  EXPECT_THAT([&] { load(tc, 2); }, ThrowsMessage<InputError>(AllOf(HasSubstr("is a transcoder"),
                                                                       HasSubstr("blocks.2.hook_mlp_out"))));
  EXPECT_THAT([&] { sae::read_sae_config(mlp, 2, {}); }, ThrowsMessage<InputError>(HasSubstr("MLP-output SAE")));
  // `saetraj info` still describes them.
  EXPECT_EQ(sae::inspect_sae(tc, 2, {}).hook_name_out, "blocks.2.hook_mlp_out");
}

TEST(GemmaScope2, BadFilesGetOneLineErrors) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 5);
  const auto dir = synth::write_gemma_scope2_sae(tmp.path(), {"resid_post", 1, "16k", "small"}, raw);
  const std::string file = dir + "/params.safetensors";
  io::write_safetensors(file, {{"w_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"b_dec", raw.b_dec}});
  EXPECT_THAT([&] { load(dir, 1); }, ThrowsMessage<FormatError>(AllOf(HasSubstr("missing tensor 'threshold'"),
                                                                        HasSubstr(file))));
  io::write_safetensors(file, {{"w_enc", raw.w_enc}, {"b_enc", raw.b_enc.slice(0, 1)}, {"b_dec", raw.b_dec},
                               {"threshold", raw.threshold}});
  EXPECT_THAT([&] { load(dir, 1); }, ThrowsMessage<FormatError>(AllOf(HasSubstr("'b_enc'"), HasSubstr("wrong shape"))));
  io::write_safetensors(file, {{"w_enc", raw.b_enc}, {"b_enc", raw.b_enc}, {"b_dec", raw.b_dec},
                               {"threshold", raw.threshold}});
  EXPECT_THAT([&] { load(dir, 1); }, ThrowsMessage<FormatError>(HasSubstr("'w_enc' must be [d_model, width]")));
  fs::create_directories(tmp.file("elsewhere/mine"));
  synth::write_gemma_scope2_sae(tmp.file("x"), {"resid_post", 1, "16k", "small"}, raw);
  fs::copy(tmp.file("x/resid_post/layer_1_width_16k_l0_small/params.safetensors"), tmp.file("elsewhere/mine"));
  EXPECT_THAT([&] { load(tmp.file("elsewhere/mine"), 1); },
              ThrowsMessage<InputError>(HasSubstr("cannot tell which activations")));
  synth::write_gemma_scope2_sae(tmp.file("y"), {"resid_post", 1, "16k", "small", true}, raw);
  const auto cfg = tmp.file("y/resid_post/layer_1_width_16k_l0_small/config.json");
  rewrite_json(cfg, [](auto& j) { j["architecture"] = "topk"; });
  EXPECT_THAT([&] { load(tmp.file("y/resid_post/layer_1_width_16k_l0_small"), 1); },
              ThrowsMessage<InputError>(HasSubstr("\"topk\" is not Gemma Scope 2's jump_relu")));
}

TEST(GemmaScope2, ReleaseTreeGivesEachLayerItsWidthAndSparsity) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 6);
  for (const char* l0 : {"small", "medium", "big"}) {
    synth::write_gemma_scope2_sae(tmp.path(), {"resid_post", 0, "16k", l0}, raw);
  }
  synth::write_gemma_scope2_sae(tmp.path(), {"resid_post", 1, "16k", "small"}, raw);
  synth::write_gemma_scope2_sae(tmp.path(), {"attn_out", 1, "16k", "medium"}, raw);
  EXPECT_EQ(fs::path(sae::resolve_gemma_scope2(tmp.path(), 0, "16k", "big")).filename(), "layer_0_width_16k_l0_big");
  // The resid_post folder itself works as the root too.
  EXPECT_EQ(fs::path(sae::resolve_gemma_scope2(tmp.file("resid_post"), 1, "16k", "small")).filename(),
            "layer_1_width_16k_l0_small");
  EXPECT_THAT([&] { sae::resolve_gemma_scope2(tmp.path(), 1, "16k", "medium"); },
              ThrowsMessage<InputError>(AllOf(HasSubstr("no resid_post/layer_1_width_16k_l0_medium"),
                                              HasSubstr("it has: resid_post/layer_1_width_16k_l0_small"))));

  pipeline::SweepOptions o;
  o.gemmascope2_root = tmp.path();
  o.gemmascope2_l0 = "small";
  o.gemmascope2_l0_layers = {"0=big"};
  const auto paths = pipeline::sweep_sae_paths(o, {0, 1});
  EXPECT_EQ(fs::path(paths[0]).filename(), "layer_0_width_16k_l0_big");
  EXPECT_EQ(fs::path(paths[1]).filename(), "layer_1_width_16k_l0_small");
  o.gemmascope2_l0 = "tiny";
  EXPECT_THAT([&] { pipeline::sweep_sae_paths(o, {0}); },
              ThrowsMessage<InputError>(HasSubstr("--gemmascope2-l0 \"tiny\": expected small, medium or big")));
  o.gemmascope2_l0 = "small";
  o.gemmascope2_l0_layers = {"7=big"};
  EXPECT_THAT([&] { pipeline::sweep_sae_paths(o, {0}); },
              ThrowsMessage<InputError>(HasSubstr("layer 7 is not among the analysed layers")));
  o.gemmascope2_l0_layers = {};
  o.saes = {"0=somewhere"};
  EXPECT_THAT([&] { pipeline::sweep_sae_paths(o, {0}); },
              ThrowsMessage<InputError>(HasSubstr("do not also give --sae")));
}

// ---- Llama Scope ----------------------------------------------------------------------------------------

TEST(LlamaScope, InputAndThresholdAreScaledBySqrtDOverTheDatasetNorm) {
  saetraj::testing::TempDir tmp;
  auto raw = synth::random_raw_sae(kD, kW, 7);
  synth::LlamaScopeSpec spec;
  spec.layer = 9;
  spec.jump_relu_threshold = 0.15;
  spec.average_norm_in = 2.5;  // s = sqrt(16) / 2.5 = 1.6
  const auto dir = synth::write_llama_scope_sae(tmp.path(), spec, raw);
  EXPECT_EQ(fs::path(dir).filename(), "Llama3_1-8B-Base-L9R-8x");
  const auto s = load(dir, 9);
  EXPECT_EQ(s.cfg.format, "llama-scope");
  EXPECT_EQ(s.cfg.hook_name, "blocks.9.hook_resid_post");
  EXPECT_EQ(s.cfg.neuronpedia_id, "llama3.1-8b/9-llamascope-res-96");
  EXPECT_FALSE(s.cfg.apply_b_dec_to_input);
  EXPECT_DOUBLE_EQ(s.cfg.input_scale, 1.6);
  const auto x = inputs(8);
  const auto pre = 1.6 * f64(x).matmul(f64(raw.w_enc)) + f64(raw.b_enc);
  const auto want = jumprelu(pre, torch::full({kW}, 1.6 * 0.15, torch::kFloat64));
  expect_same_activations(s.encode(x), want, "llama scope");
  // Leaving the threshold unscaled (the old mistake) fires more features: the test tells them apart.
  const auto dense = jumprelu(pre, torch::full({kW}, 0.15, torch::kFloat64));
  EXPECT_GT(dense.gt(0).sum().item<int64_t>(), want.gt(0).sum().item<int64_t>());

  // BF16 storage (as the release's checkpoints may be) reads through the same path.
  spec.storage = io::DType::BF16;
  spec.layer = 10;
  const auto bf = load(synth::write_llama_scope_sae(tmp.path(), spec, raw), 10);
  EXPECT_EQ(bf.w_enc.scalar_type(), torch::kFloat32);
  EXPECT_LT((bf.w_enc - 1.6 * raw.w_enc).abs().max().item<double>(), 0.02);
}

TEST(LlamaScope, AttentionMlpAndTranscoderFoldersAreRefused) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 9);
  synth::LlamaScopeSpec spec;
  spec.layer = 4;
  spec.position = "A";
  const auto a = synth::write_llama_scope_sae(tmp.path(), spec, raw);
  spec.position = "M";
  const auto m = synth::write_llama_scope_sae(tmp.path(), spec, raw);
  spec.position = "TC";
  const auto t = synth::write_llama_scope_sae(tmp.path(), spec, raw);
  EXPECT_THAT([&] { load(a, 4); }, ThrowsMessage<InputError>(HasSubstr("attention-output SAE")));
  EXPECT_THAT([&] { load(m, 4); }, ThrowsMessage<InputError>(HasSubstr("MLP-output SAE")));
  EXPECT_THAT([&] { load(t, 4); }, ThrowsMessage<InputError>(AllOf(HasSubstr("is a transcoder"),
                                                                     HasSubstr("blocks.4.ln2.hook_normalized"))));
}

TEST(LlamaScope, BadFilesGetOneLineErrors) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 10);
  const auto dir = synth::write_llama_scope_sae(tmp.path(), {}, raw);
  const std::string hp = dir + "/hyperparams.json";
  rewrite_json(hp, [](auto& j) { j.erase("dataset_average_activation_norm"); });
  EXPECT_THAT([&] { load(dir); }, ThrowsMessage<FormatError>(AllOf(HasSubstr(hp), HasSubstr("dataset_average_activation_norm.in"))));
  rewrite_json(hp, [](auto& j) { j["dataset_average_activation_norm"] = {{"in", 0.0}}; });
  EXPECT_THAT([&] { load(dir); }, ThrowsMessage<FormatError>(HasSubstr("must be positive")));
  rewrite_json(hp, [](auto& j) { j["dataset_average_activation_norm"] = {{"in", 3.0}}; j["act_fn"] = "topk"; });
  EXPECT_THAT([&] { load(dir); }, ThrowsMessage<InputError>(HasSubstr("act_fn \"topk\" is not supported")));
  rewrite_json(hp, [](auto& j) { j["act_fn"] = "jumprelu"; j["d_sae"] = kW + 1; });
  EXPECT_THAT([&] { load(dir); }, ThrowsMessage<FormatError>(AllOf(HasSubstr("'encoder.weight'"), HasSubstr("wrong shape"))));
  rewrite_json(hp, [](auto& j) { j["d_sae"] = kW; j.erase("d_model"); });
  EXPECT_THAT([&] { load(dir); }, ThrowsMessage<FormatError>(HasSubstr("missing field \"d_model\"")));
  fs::remove(dir + "/checkpoints/final.safetensors");
  rewrite_json(hp, [](auto& j) { j["d_model"] = kD; });
  EXPECT_THROW(load(dir), IoError);
}

// ---- sparsify -------------------------------------------------------------------------------------------

TEST(Sparsify, TopKOfReluAfterSubtractingBDec) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 11);
  const auto dir = synth::write_sparsify_sae(tmp.path(), {"layers.5", 6}, raw);
  const auto s = load(dir, 5);
  EXPECT_EQ(s.cfg.format, "sparsify");
  EXPECT_EQ(s.cfg.hook_name, "blocks.5.hook_resid_post");
  EXPECT_EQ(s.cfg.model_name, "meta-llama/Meta-Llama-3-8B");
  EXPECT_EQ(s.cfg.id, "meta-llama/Meta-Llama-3-8B/layers.5");
  EXPECT_EQ(s.cfg.topk_k, 6);
  const auto x = inputs(12);
  const auto want = top_k_of((f64(x) - f64(raw.b_dec)).matmul(f64(raw.w_enc)) + f64(raw.b_enc), 6);
  expect_same_activations(s.encode(x), want, "sparsify");
}

TEST(Sparsify, HookpointsAndSettingsThatDoNotFitAreRefused) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 13);
  EXPECT_THAT([&] { load(synth::write_sparsify_sae(tmp.path(), {"layers.2.mlp", 6}, raw), 2); },
              ThrowsMessage<InputError>(HasSubstr("MLP-output SAE")));
  EXPECT_THAT([&] { load(synth::write_sparsify_sae(tmp.path(), {"layers.2.self_attn", 6}, raw), 2); },
              ThrowsMessage<InputError>(HasSubstr("attention-output SAE")));
  EXPECT_THAT([&] { load(synth::write_sparsify_sae(tmp.file("tc"), {"layers.2.mlp", 6, true}, raw), 2); },
              ThrowsMessage<InputError>(HasSubstr("is a transcoder")));
  EXPECT_THAT([&] { load(synth::write_sparsify_sae(tmp.file("g"), {"layers.2", 6, false, "groupmax"}, raw), 2); },
              ThrowsMessage<InputError>(HasSubstr("activation \"groupmax\" is not supported (topk)")));
  EXPECT_THAT([&] { load(synth::write_sparsify_sae(tmp.path(), {"my_sae", 6}, raw), 2); },
              ThrowsMessage<InputError>(HasSubstr("from its folder name \"my_sae\"")));
  const auto dir = synth::write_sparsify_sae(tmp.file("k"), {"layers.3", 6}, raw);
  rewrite_json(dir + "/cfg.json", [](auto& j) { j["k"] = 0; });
  EXPECT_THAT([&] { load(dir, 3); }, ThrowsMessage<FormatError>(HasSubstr("\"k\" must be a positive integer")));
  rewrite_json(dir + "/cfg.json", [](auto& j) { j["k"] = 6; j["num_latents"] = kW * 2; });
  EXPECT_THAT([&] { load(dir, 3); }, ThrowsMessage<FormatError>(AllOf(HasSubstr("'encoder.weight'"), HasSubstr("wrong shape"))));
}

// ---- SAE-Lens architectures -----------------------------------------------------------------------------

TEST(SaeLensArchitectures, GatedIsTheGateTimesTheMagnitude) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 14);
  auto gen = at::detail::createCPUGenerator(15);
  const auto b_gate = torch::randn({kW}, gen) * 0.3, b_mag = torch::randn({kW}, gen) * 0.3,
             r_mag = torch::randn({kW}, gen) * 0.5;
  synth::write_sae_lens_sae(tmp.path(), {{"architecture", "gated"}, {"apply_b_dec_to_input", true}},
                            "blocks.1.hook_resid_pre",
                            {{"W_enc", raw.w_enc}, {"b_gate", b_gate}, {"b_mag", b_mag}, {"r_mag", r_mag},
                             {"W_dec", raw.w_dec}, {"b_dec", raw.b_dec}});
  const auto s = load(tmp.path(), 1);
  EXPECT_EQ(s.cfg.activation, sae::Activation::JumpReLU);
  EXPECT_THAT(s.cfg.preprocessing_summary(), HasSubstr("gated read as jumprelu"));
  // Both regimes of the fold occur: gates below and above zero.
  const auto theta = b_mag - r_mag.exp() * b_gate;
  EXPECT_GT(theta.lt(0).sum().item<int64_t>(), 0);
  EXPECT_GT(theta.gt(0).sum().item<int64_t>(), 0);
  const auto x = inputs(16);
  const auto xc = f64(x) - f64(raw.b_dec);
  const auto gate = (xc.matmul(f64(raw.w_enc)) + f64(b_gate)).gt(0).to(torch::kFloat64);
  const auto mag = (xc.matmul(f64(raw.w_enc) * f64(r_mag).exp()) + f64(b_mag)).relu();
  expect_same_activations(s.encode(x), gate * mag, "gated");
}

TEST(SaeLensArchitectures, TopKRescaledByDecoderNormsUsesTheirNormsOnly) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 17);
  synth::write_sae_lens_sae(tmp.path(), {{"architecture", "topk"}, {"k", 5}, {"rescale_acts_by_decoder_norm", true}},
                            "blocks.2.hook_resid_post",
                            {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"W_dec", raw.w_dec}, {"b_dec", raw.b_dec}});
  const auto s = load(tmp.path(), 2);
  EXPECT_EQ(s.cfg.activation, sae::Activation::TopK);
  EXPECT_THAT(s.cfg.preprocessing_summary(), HasSubstr("decoder row norms"));
  const auto x = inputs(18);
  const auto pre = (f64(x) - f64(raw.b_dec)).matmul(f64(raw.w_enc)) + f64(raw.b_enc);
  const auto norms = f64(raw.w_dec).norm(2, 1);
  const auto want = top_k_of(pre * norms, 5);
  expect_same_activations(s.encode(x), want, "topk rescaled");
  // The rescaling changes which features win.
  EXPECT_FALSE(torch::equal(want.gt(0), top_k_of(pre, 5).gt(0)));
  // W_dec of the wrong shape is refused by name.
  synth::write_sae_lens_sae(tmp.file("bad"), {{"architecture", "topk"}, {"k", 5}, {"rescale_acts_by_decoder_norm", true}},
                            "blocks.2.hook_resid_post",
                            {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"W_dec", raw.w_dec.t().contiguous()},
                             {"b_dec", raw.b_dec}});
  EXPECT_THAT([&] { load(tmp.file("bad"), 2); },
              ThrowsMessage<FormatError>(AllOf(HasSubstr("'W_dec'"), HasSubstr("wrong shape"))));
}

TEST(SaeLensArchitectures, BatchTopKCheckpointsAreJumpReluOnTheRescaledPreActivations) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 19);
  const auto x = inputs(20);
  const auto pre = (f64(x) - f64(raw.b_dec)).matmul(f64(raw.w_enc)) + f64(raw.b_enc);
  const auto norms = f64(raw.w_dec).norm(2, 1);
  for (const char* arch : {"batchtopk", "matryoshka_batchtopk"}) {
    const std::string dir = tmp.file(arch);
    // A training checkpoint: one topk_threshold, rescale_acts_by_decoder_norm at its training default (true).
    synth::write_sae_lens_sae(dir, {{"architecture", arch}, {"k", 10}}, "blocks.0.hook_resid_post",
                              {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"W_dec", raw.w_dec},
                               {"b_dec", raw.b_dec}, {"topk_threshold", torch::tensor(0.4)}});
    const auto s = load(dir, 0);
    EXPECT_EQ(s.cfg.activation, sae::Activation::JumpReLU) << arch;
    expect_same_activations(s.encode(x), jumprelu(pre * norms, torch::full({kW}, 0.4, torch::kFloat64)), arch);
  }
  // Saved for inference, SAE-Lens writes them as jumprelu with a threshold tensor: read as such.
  synth::write_sae_lens_sae(tmp.file("saved"), {{"architecture", "jumprelu"}}, "blocks.0.hook_resid_post",
                            {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"W_dec", raw.w_dec}, {"b_dec", raw.b_dec},
                             {"threshold", raw.threshold}});
  expect_same_activations(load(tmp.file("saved"), 0).encode(x), jumprelu(pre, f64(raw.threshold)), "saved batchtopk");
  synth::write_sae_lens_sae(tmp.file("none"), {{"architecture", "batchtopk"}}, "blocks.0.hook_resid_post",
                            {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"b_dec", raw.b_dec}});
  EXPECT_THAT([&] { load(tmp.file("none"), 0); },
              ThrowsMessage<FormatError>(HasSubstr("a batchtopk SAE needs a 'threshold' (or 'log_threshold', or 'topk_threshold')")));
}

TEST(SaeLensArchitectures, ConstantScalarRescaleMultipliesTheInputBeforeBDec) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 21);
  synth::write_sae_lens_sae(tmp.path(),
                            {{"architecture", "standard"}, {"normalize_activations", "constant_scalar_rescale"},
                             {"activation_normalization_factor", 2.5}},
                            "blocks.3.hook_resid_pre",
                            {{"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"W_dec", raw.w_dec}, {"b_dec", raw.b_dec}});
  const auto s = load(tmp.path(), 3);
  EXPECT_EQ(s.cfg.normalization, sae::Normalization::ConstantScalarRescale);
  const auto x = inputs(22);
  const auto want = ((2.5 * f64(x) - f64(raw.b_dec)).matmul(f64(raw.w_enc)) + f64(raw.b_enc)).relu();
  expect_same_activations(s.encode(x), want, "constant_scalar_rescale");
  rewrite_json(tmp.file("cfg.json"), [](auto& j) { j.erase("activation_normalization_factor"); });
  EXPECT_THAT([&] { load(tmp.path(), 3); },
              ThrowsMessage<FormatError>(HasSubstr("needs a positive \"activation_normalization_factor\"")));
}

TEST(SaeLensArchitectures, OtherArchitecturesAndHooksAreRefusedByName) {
  saetraj::testing::TempDir tmp;
  const auto raw = synth::random_raw_sae(kD, kW, 23);
  const std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"W_enc", raw.w_enc}, {"b_enc", raw.b_enc}, {"W_dec", raw.w_dec}, {"b_dec", raw.b_dec}, {"threshold", raw.threshold}};
  for (const char* arch : {"abstopk", "temporal", "matching_pursuit"}) {
    synth::write_sae_lens_sae(tmp.file(arch), {{"architecture", arch}}, "blocks.0.hook_resid_post", tensors);
    EXPECT_THAT([&] { load(tmp.file(arch), 0); },
                ThrowsMessage<InputError>(AllOf(HasSubstr(std::string("architecture \"") + arch + "\" is not supported"),
                                                HasSubstr("gated, batchtopk, matryoshka_batchtopk"))));
  }
  synth::write_sae_lens_sae(tmp.file("tc"), {{"architecture", "jumprelu_transcoder"}, {"hook_name_out", "blocks.0.hook_mlp_out"}},
                            "blocks.0.ln2.hook_normalized", tensors);
  EXPECT_THAT([&] { load(tmp.file("tc"), 0); }, ThrowsMessage<InputError>(HasSubstr("is a transcoder")));
  synth::write_sae_lens_sae(tmp.file("z"), {{"architecture", "jumprelu"}}, "blocks.0.attn.hook_z", tensors);
  EXPECT_THAT([&] { load(tmp.file("z"), 0); }, ThrowsMessage<InputError>(HasSubstr("a hook_z SAE")));
  synth::write_sae_lens_sae(tmp.file("a"), {{"architecture", "jumprelu"}}, "blocks.0.hook_attn_out", tensors);
  EXPECT_THAT([&] { sae::read_sae_config(tmp.file("a"), 0, {}); },
              ThrowsMessage<InputError>(HasSubstr("an attention-output SAE")));
  synth::write_sae_lens_sae(tmp.file("n"), {{"architecture", "jumprelu"}, {"normalize_activations", "covariance_whitening"}},
                            "blocks.0.hook_resid_post", tensors);
  EXPECT_THAT([&] { load(tmp.file("n"), 0); },
              ThrowsMessage<InputError>(HasSubstr("\"covariance_whitening\" is not supported")));
}
